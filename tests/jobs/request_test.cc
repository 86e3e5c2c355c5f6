#include "jobs/request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "jobs/loader.h"

namespace gearrun::jobs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

const JobSpec& TestJob() {
  static const JobSpec job = [] {
    auto report = LoadJobText(R"(
name: guava
parameters:
  BRANCH: {default: main}
  TARGET: {choices: [x86_64, arm64], default: x86_64}
  NEEDED: {required: true}
  API_KEY: {secret: true}
  COUNT: {}
  OPTIONAL: {}
steps: [{run: 'true'}]
)",
                              "guava.yaml");
    EXPECT_TRUE(report.ok());
    return report.jobs.at(0);
  }();
  return job;
}

tl::expected<BoundRequest, Error> Bind(std::string_view workload,
                                       const RequestPolicy& policy = {}) {
  return BindRequest(TestJob(), workload, policy);
}

std::string BadRequestReason(std::string_view workload) {
  auto bound = Bind(workload);
  EXPECT_FALSE(bound.has_value()) << workload;
  if (bound) return "";
  EXPECT_EQ(bound.error().code, ErrorCode::kBadRequest);
  // One line of printable ASCII, safe for WORK_EXCEPTION and logs.
  for (char c : bound.error().message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in: " << bound.error().message;
  }
  return bound.error().message;
}

TEST(RequestTest, BadRequestsFromTheContract) {
  EXPECT_THAT(BadRequestReason(""), HasSubstr("the workload is empty"));
  EXPECT_THAT(BadRequestReason("  \n"), HasSubstr("the workload is empty"));
  EXPECT_THAT(BadRequestReason("[1,2]"), HasSubstr("must be a JSON object, not an array"));
  EXPECT_THAT(BadRequestReason("\"text\""), HasSubstr("must be a JSON object"));
  EXPECT_THAT(BadRequestReason("42"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(BadRequestReason("null"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\",\"A\":{\"b\":1}}"),
              HasSubstr("parameter 'A' is an object; values must be strings, numbers or booleans"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\",\"A\":[1]}"),
              HasSubstr("parameter 'A' is an array"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\",\"BRANCH\":\"a\",\"BRANCH\":\"b\"}"),
              HasSubstr("parameter 'BRANCH' is given twice"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\",\"BRANCH\":\"\xff\xfe\"}"),
              HasSubstr("invalid JSON at byte"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"\xc3\x28\"}"), HasSubstr("invalid JSON"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\""), HasSubstr("invalid JSON"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\"} {}"), HasSubstr("invalid JSON"));
  EXPECT_THAT(BadRequestReason("{NEEDED: x}"), HasSubstr("invalid JSON"));
}

// What once got a number, WORK_DATA and then NOT_BUILT (execve refused the environment), or
// was run with part of the workload ignored, is a bad request before any build starts.
TEST(RequestTest, ValuesABuildCannotStartWithAreBadRequests) {
  using namespace std::string_literals;
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\"}\0{\"BRANCH\":\"evil\"}"s),
              HasSubstr("invalid JSON at byte 15: a NUL byte"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\"}\0"s), HasSubstr("a NUL byte"));
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"a\\u0000b\"}"),
              HasSubstr("parameter 'NEEDED' holds a NUL byte"));
  // Undeclared ones too: the build would never see them, but the sender should know.
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"x\",\"ZUUL_X\":\"a\\u0000\"}"),
              HasSubstr("parameter 'ZUUL_X' holds a NUL byte"));
  std::string big(kMaxVariableBytes - std::string("NEEDED=").size() + 1, 'x');
  EXPECT_THAT(BadRequestReason("{\"NEEDED\":\"" + big + "\"}"),
              HasSubstr("parameter 'NEEDED' is 131065 bytes long; with its name it may be at "
                        "most 131071"));
  big.pop_back();
  EXPECT_TRUE(Bind("{\"NEEDED\":\"" + big + "\"}").has_value());
}

TEST(RequestTest, NumbersAndBooleansBecomeTheirJsonText) {
  auto bound = Bind(R"({"NEEDED": 1, "COUNT": 2.50, "OPTIONAL": true, "BRANCH": -7})");
  ASSERT_TRUE(bound) << bound.error().message;
  EXPECT_EQ(bound->parameters.at("NEEDED"), "1");
  EXPECT_EQ(bound->parameters.at("COUNT"), "2.50");
  EXPECT_EQ(bound->parameters.at("OPTIONAL"), "true");
  EXPECT_EQ(bound->parameters.at("BRANCH"), "-7");
  auto big = Bind(R"({"NEEDED": 18446744073709551615, "COUNT": 1e3, "OPTIONAL": false})");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->parameters.at("NEEDED"), "18446744073709551615");
  EXPECT_EQ(big->parameters.at("COUNT"), "1e3");
  EXPECT_EQ(big->parameters.at("OPTIONAL"), "false");
}

TEST(RequestTest, UnicodeValuesPassUnchanged) {
  auto bound = Bind("{\"NEEDED\": \"caf\xc3\xa9 \\u00e9\"}");
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->parameters.at("NEEDED"), "caf\xc3\xa9 \xc3\xa9");
}

TEST(RequestTest, DefaultsApplyWhenNotGivenOrNull) {
  auto bound = Bind(R"({"NEEDED": "x", "BRANCH": null})");
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->parameters.at("BRANCH"), "main");
  EXPECT_EQ(bound->parameters.at("TARGET"), "x86_64");
  EXPECT_FALSE(bound->parameters.contains("COUNT"));  // no default, not given: absent
  auto given = Bind(R"({"NEEDED": "x", "BRANCH": "dev"})");
  EXPECT_EQ(given->parameters.at("BRANCH"), "dev");
}

TEST(RequestTest, RequiredMeansGivenAndNonEmpty) {
  EXPECT_THAT(BadRequestReason("{}"), HasSubstr("missing required parameter 'NEEDED'"));
  EXPECT_THAT(BadRequestReason(R"({"NEEDED": null})"), HasSubstr("missing required"));
  EXPECT_THAT(BadRequestReason(R"({"NEEDED": ""})"), HasSubstr("missing required"));
}

TEST(RequestTest, ChoicesAreChecked) {
  EXPECT_THAT(BadRequestReason(R"({"NEEDED": "x", "TARGET": "sparc"})"),
              HasSubstr("parameter 'TARGET' must be one of x86_64, arm64, not 'sparc'"));
  auto ok = Bind(R"({"NEEDED": "x", "TARGET": "arm64"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->parameters.at("TARGET"), "arm64");
}

TEST(RequestTest, EveryProblemIsListedOnOneLine) {
  auto reason = BadRequestReason(R"({"TARGET": "sparc", "PATH": "/evil"})");
  EXPECT_THAT(reason, HasSubstr("'PATH' may not be set"));
  EXPECT_THAT(reason, HasSubstr("missing required parameter 'NEEDED'"));
  EXPECT_THAT(reason, HasSubstr("must be one of"));
}

TEST(RequestTest, SecretsAreMarked) {
  auto bound = Bind(R"({"NEEDED": "x", "API_KEY": "s3cret"})");
  ASSERT_TRUE(bound);
  EXPECT_THAT(bound->secret_names, ElementsAre("API_KEY"));
  EXPECT_THAT(bound->secret_values, ElementsAre("s3cret"));
  EXPECT_EQ(bound->parameters.at("API_KEY"), "s3cret");  // the build still gets it
}

TEST(RequestTest, UndeclaredAreDroppedUnlessPassedThrough) {
  auto bound = Bind(R"({"NEEDED": "x", "RANDOM": "1", "ZUUL_UUID": "u", "ZUUL_PROJECT": "p",
                        "BASE_LOG_PATH": "b", "LOG_PATH": "l", "OFFLINE_NODE_WHEN_COMPLETE": "0",
                        "bad name": "x"})");
  ASSERT_TRUE(bound) << bound.error().message;
  EXPECT_THAT(bound->dropped, UnorderedElementsAre("RANDOM", "bad name"));
  EXPECT_EQ(bound->parameters.at("ZUUL_UUID"), "u");
  EXPECT_EQ(bound->parameters.at("ZUUL_PROJECT"), "p");
  EXPECT_EQ(bound->parameters.at("BASE_LOG_PATH"), "b");
  EXPECT_EQ(bound->parameters.at("LOG_PATH"), "l");
  EXPECT_EQ(bound->parameters.at("OFFLINE_NODE_WHEN_COMPLETE"), "0");
  EXPECT_FALSE(bound->parameters.contains("RANDOM"));
}

TEST(RequestTest, PassThroughPatternsAreConfigurable) {
  RequestPolicy policy{.pass_through = {"CI_*"}};
  auto bound = Bind(R"({"NEEDED": "x", "CI_JOB": "1", "ZUUL_UUID": "u"})", policy);
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->parameters.at("CI_JOB"), "1");
  EXPECT_THAT(bound->dropped, ElementsAre("ZUUL_UUID"));
  RequestPolicy none{.pass_through = {}};
  EXPECT_THAT(Bind(R"({"NEEDED": "x", "ZUUL_UUID": "u"})", none)->dropped,
              ElementsAre("ZUUL_UUID"));
}

TEST(RequestTest, PassedThroughNamesMustBeVariableNames) {
  RequestPolicy policy{.pass_through = {"*"}};
  auto bound = Bind(R"({"NEEDED": "x", "A=B": "1"})", policy);
  ASSERT_FALSE(bound);
  EXPECT_THAT(bound.error().message, HasSubstr("'A=B' is not a valid variable name"));
}

TEST(RequestTest, ForbiddenNamesAreRefusedEvenWhenPassedThrough) {
  RequestPolicy everything{.pass_through = {"*"}};
  for (const std::string name :
       {"PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "LD_PRELOAD", "LD_AUDIT",
        "BUILD_NUMBER", "JOB_NAME", "WORKSPACE", "NODE_NAME", "NODE_LABELS", "EXECUTOR_NUMBER",
        "BUILD_TAG", "GEARMAN_UNIQUE"}) {
    auto bound = Bind(R"({"NEEDED": "x", ")" + name + R"(": "v"})", everything);
    ASSERT_FALSE(bound) << name;
    EXPECT_THAT(bound.error().message, HasSubstr("'" + name + "' may not be set by a request"));
  }
  // null means not given, so there is nothing to refuse.
  EXPECT_TRUE(Bind(R"({"NEEDED": "x", "PATH": null})"));
}

TEST(RequestTest, OfflineNodeWhenCompleteFlag) {
  for (const char* yes : {R"("1")", R"("true")", R"("True")", R"("TRUE")", "1", "true"}) {
    auto bound = Bind(std::string(R"({"NEEDED": "x", "OFFLINE_NODE_WHEN_COMPLETE": )") + yes + "}");
    ASSERT_TRUE(bound);
    EXPECT_TRUE(bound->offline_when_complete) << yes;
  }
  for (const char* no : {R"("0")", R"("false")", R"("yes")", "0", "false", "null", R"("")"}) {
    auto bound = Bind(std::string(R"({"NEEDED": "x", "OFFLINE_NODE_WHEN_COMPLETE": )") + no + "}");
    ASSERT_TRUE(bound);
    EXPECT_FALSE(bound->offline_when_complete) << no;
  }
  // Recognised even where the node does not pass the variable through.
  RequestPolicy none{.pass_through = {}};
  auto bound = Bind(R"({"NEEDED": "x", "OFFLINE_NODE_WHEN_COMPLETE": true})", none);
  EXPECT_TRUE(bound->offline_when_complete);
  EXPECT_FALSE(bound->parameters.contains("OFFLINE_NODE_WHEN_COMPLETE"));
}

TEST(RequestTest, ParseWorkloadKeepsOrderAndNulls) {
  auto params = ParseWorkload(R"({"b": "1", "a": null})");
  ASSERT_TRUE(params);
  EXPECT_THAT(*params, ElementsAre(Pair("b", std::optional<std::string>("1")),
                                   Pair("a", std::optional<std::string>())));
  EXPECT_THAT(*ParseWorkload("{}"), IsEmpty());
}

TEST(RequestTest, BindParametersFromTheCommandLine) {
  RequestParameters params = {{"NEEDED", "x"}, {"BRANCH", "dev"}};
  auto bound = BindParameters(TestJob(), params, RequestPolicy{});
  ASSERT_TRUE(bound);
  EXPECT_EQ(bound->parameters.at("BRANCH"), "dev");
}

}  // namespace
}  // namespace gearrun::jobs
