#include "runner/payload.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace gearrun::runner {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

BuildRecord Record() {
  BuildRecord r{.job = "guava", .number = 7, .result = Result::kSuccess, .node = "build-01"};
  r.node_labels = {"build-01", "ubuntu"};
  r.unique = "u-1";
  r.duration_ms = 812;
  r.parameters = {{"API_KEY", "****"}};
  r.steps.push_back({.name = "compile",
                     .result = StepResult::kSuccess,
                     .exit_code = 0,
                     .attempts = 1,
                     .duration_ms = 800});
  return r;
}

const PayloadContext kContext{.manager = "build-01", .worker = "build-01_exec-0"};

TEST(PayloadTest, StartPayloadHasTheContractKeysAndTypes) {
  Json j = Json::parse(StartPayload(Record(), kContext));
  EXPECT_EQ(j["name"], "guava");
  EXPECT_TRUE(j["number"].is_number_integer());
  EXPECT_EQ(j["number"], 7);
  EXPECT_EQ(j["manager"], "build-01");
  EXPECT_EQ(j["worker"], "build-01_exec-0");
  EXPECT_EQ(j["node_name"], "build-01");
  EXPECT_EQ(j["node_labels"], Json::array({"build-01", "ubuntu"}));
  EXPECT_FALSE(j.contains("result"));  // only the final payload has one
  EXPECT_FALSE(j.contains("url"));
}

TEST(PayloadTest, FinalPayloadAddsResultAndDetails) {
  PayloadContext with_url = kContext;
  with_url.url = "http://build-01/logs/guava/7";
  Json j = Json::parse(FinalPayload(Record(), with_url));
  EXPECT_EQ(j["result"], "SUCCESS");
  EXPECT_EQ(j["unique"], "u-1");
  EXPECT_EQ(j["duration_ms"], 812);
  EXPECT_EQ(j["reason"], "");
  EXPECT_EQ(j["url"], "http://build-01/logs/guava/7");
  ASSERT_EQ(j["steps"].size(), 1u);
  EXPECT_EQ(j["steps"][0]["name"], "compile");
  EXPECT_EQ(j["steps"][0]["exit_code"], 0);
  EXPECT_FALSE(j.contains("parameters"));   // never: secrets stay out of payloads
  EXPECT_FALSE(j.contains("jobs_commit"));  // local job files
}

TEST(PayloadTest, FinalPayloadNamesTheJobsCommitAndParsesBack) {
  BuildRecord record = Record();
  record.jobs_commit = std::string(40, 'a');
  Json j = Json::parse(FinalPayload(record, kContext));
  EXPECT_EQ(j["jobs_commit"], record.jobs_commit);
  EXPECT_EQ(ParseFinalPayload(j.dump())->jobs_commit, record.jobs_commit);
}

TEST(PayloadTest, BuildReferenceForms) {
  auto a = ParseBuildReference(R"({"name": "guava", "number": 7})", ReferenceKind::kStop);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "guava");
  EXPECT_EQ(a->number, 7);
  auto b = ParseBuildReference(R"({"name": "guava", "number": "12"})", ReferenceKind::kStop);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->number, 12);
  auto d = ParseBuildReference(R"({"name": "g", "number": 1, "html_description": "<b>x</b>"})",
                               ReferenceKind::kSetDescription);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->html_description, "<b>x</b>");
}

TEST(PayloadTest, MalformedBuildReferencesSayWhy) {
  auto stop = [](std::string_view w) {
    return ParseBuildReference(w, ReferenceKind::kStop).error();
  };
  EXPECT_THAT(stop(""), HasSubstr("expected a JSON object"));
  EXPECT_THAT(stop("[1]"), HasSubstr("expected a JSON object"));
  EXPECT_THAT(stop(R"({"number": 7})"), HasSubstr("\"name\""));
  EXPECT_THAT(stop(R"({"name": 3, "number": 7})"), HasSubstr("\"name\""));
  EXPECT_THAT(stop(R"({"name": "g"})"), HasSubstr("\"number\""));
  EXPECT_THAT(stop(R"({"name": "g", "number": "7x"})"), HasSubstr("\"number\""));
  EXPECT_THAT(stop(R"({"name": "g", "number": 7.5})"), HasSubstr("\"number\""));
  EXPECT_THAT(stop(R"({"name": "g", "number": -1})"), HasSubstr("\"number\""));
  EXPECT_THAT(
      ParseBuildReference(R"({"name": "g", "number": 1})", ReferenceKind::kSetDescription).error(),
      HasSubstr("html_description"));
}

// A name from a request becomes a path on the node: a path given as a name once read and
// overwrote another build's record ({"name": "/some/dir", ...}).
TEST(PayloadTest, ABuildReferenceNameMustBeAJobName) {
  using namespace std::string_literals;
  for (const char* name : {"/tmp/x", "../other", "..", "a/b", "a b", ""}) {
    std::string workload = R"({"name": ")" + std::string(name) + R"(", "number": 1})";
    auto ref = ParseBuildReference(workload, ReferenceKind::kSetDescription);
    ASSERT_FALSE(ref) << name;
    EXPECT_THAT(ref.error(), HasSubstr("\"name\"")) << name;
  }
  EXPECT_THAT(ParseBuildReference(R"({"name": "/x", "number": 1})", ReferenceKind::kStop).error(),
              HasSubstr("not a job name"));
  EXPECT_THAT(
      ParseBuildReference("{\"name\": \"g\", \"number\": 1}\0junk"s, ReferenceKind::kStop).error(),
      HasSubstr("a NUL byte"));
}

}  // namespace
}  // namespace gearrun::runner
