// The nlohmann-json adapter for Gearman payloads.
#include "runner/payload.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "jobs/job_spec.h"

namespace gearrun::runner {
namespace {

using Json = nlohmann::ordered_json;

Json Common(const BuildRecord& r, const PayloadContext& c) {
  Json j = {{"name", r.job},      {"number", r.number},  {"manager", c.manager},
            {"worker", c.worker}, {"node_name", r.node}, {"node_labels", r.node_labels}};
  if (!c.url.empty()) j["url"] = c.url;
  return j;
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string StartPayload(const BuildRecord& record, const PayloadContext& context) {
  return Dump(Common(record, context));
}

std::string FinalPayload(const BuildRecord& record, const PayloadContext& context) {
  Json j = Common(record, context);
  j["result"] = ToString(record.result);
  j["unique"] = record.unique;
  j["duration_ms"] = record.duration_ms;
  j["reason"] = record.reason;
  if (!record.jobs_commit.empty()) j["jobs_commit"] = record.jobs_commit;
  // What of the build the node could not write (its log lost bytes): the result stands.
  if (!record.state_error.empty()) j["state_error"] = record.state_error;
  Json steps = Json::array();
  for (const auto& s : record.steps) {
    steps.push_back({{"name", s.name},
                     {"finally", s.is_finally},
                     {"result", ToString(s.result)},
                     {"exit_code", s.exit_code},
                     {"signal", s.signal},
                     {"timed_out", s.timed_out},
                     {"attempts", s.attempts},
                     {"duration_ms", s.duration_ms}});
  }
  j["steps"] = std::move(steps);
  return Dump(j);
}

tl::expected<BuildRecord, std::string> ParseFinalPayload(std::string_view payload) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  auto fail = [] { return tl::unexpected(std::string("not a build's final payload")); };
  if (!j.is_object()) return fail();
  auto text = [&](const nlohmann::json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto integer = [&](const nlohmann::json& o, const char* key, std::int64_t fallback) {
    auto it = o.find(key);
    return it != o.end() && it->is_number_integer() ? it->get<std::int64_t>() : fallback;
  };
  auto boolean = [&](const nlohmann::json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_boolean() && it->get<bool>();
  };
  BuildRecord r;
  r.job = text(j, "name");
  r.number = integer(j, "number", 0);
  auto result = ResultFromString(text(j, "result"));
  if (r.job.empty() || r.number <= 0 || !result) return fail();
  r.result = *result;
  r.node = text(j, "node_name");
  r.reason = text(j, "reason");
  r.unique = text(j, "unique");
  r.jobs_commit = text(j, "jobs_commit");
  r.state_error = text(j, "state_error");
  r.duration_ms = integer(j, "duration_ms", 0);
  if (auto steps = j.find("steps"); steps != j.end() && steps->is_array()) {
    for (const auto& s : *steps) {
      if (!s.is_object()) continue;
      StepRecord step;
      step.name = text(s, "name");
      step.is_finally = boolean(s, "finally");
      step.timed_out = boolean(s, "timed_out");
      step.result = StepResultFromString(text(s, "result")).value_or(StepResult::kNotRun);
      step.exit_code = static_cast<int>(integer(s, "exit_code", -1));
      step.signal = static_cast<int>(integer(s, "signal", 0));
      step.attempts = static_cast<int>(integer(s, "attempts", 0));
      step.duration_ms = integer(s, "duration_ms", 0);
      r.steps.push_back(std::move(step));
    }
  }
  return r;
}

tl::expected<BuildReference, std::string> ParseBuildReference(std::string_view workload,
                                                              ReferenceKind kind) {
  // The parser would take a NUL for the end of the input and ignore what follows.
  if (workload.find('\0') != std::string_view::npos) {
    return tl::unexpected(std::string("invalid JSON: a NUL byte"));
  }
  nlohmann::json j = nlohmann::json::parse(workload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return tl::unexpected(
        std::string("expected a JSON object such as {\"name\": \"job\", "
                    "\"number\": 7}"));
  }
  BuildReference ref;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) {
    return tl::unexpected(std::string("missing or invalid \"name\": expected the job name"));
  }
  ref.name = name->get<std::string>();
  // Checked before anything is looked up: a name is a directory name on this node.
  if (std::string problem = jobs::JobNameProblem(ref.name); !problem.empty()) {
    return tl::unexpected("invalid \"name\": not a job name (" + problem + ")");
  }
  auto number = j.find("number");
  bool ok = false;
  if (number != j.end() && number->is_number_integer()) {
    ref.number = number->get<std::int64_t>();
    ok = true;
  } else if (number != j.end() && number->is_string()) {
    const auto& text = number->get_ref<const std::string&>();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ref.number);
    ok = ec == std::errc() && end == text.data() + text.size();
  }
  if (!ok || ref.number <= 0) {
    return tl::unexpected(
        std::string("missing or invalid \"number\": expected a build number such as 7"));
  }
  if (kind == ReferenceKind::kSetDescription) {
    auto d = j.find("html_description");
    if (d == j.end() || !d->is_string()) {
      return tl::unexpected(std::string("missing or invalid \"html_description\": expected text"));
    }
    ref.html_description = d->get<std::string>();
  }
  return ref;
}

}  // namespace gearrun::runner
