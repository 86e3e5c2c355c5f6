// The nlohmann-json adapter: the only file of jobs/ that sees nlohmann types.
#include "jobs/request.h"

#include <fnmatch.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace gearrun::jobs {
namespace {

// One line of printable ASCII, at most `max` characters: safe in a Gearman reply and a log.
std::string Sanitize(std::string_view text, size_t max = 120) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  return out;
}

tl::unexpected<Error> BadRequest(std::string message) {
  return tl::unexpected(Error{.code = ErrorCode::kBadRequest, .message = std::move(message)});
}

// Accepts exactly one flat object; records the first reason to refuse.
class FlatObjectSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return Value(std::nullopt); }
  bool boolean(bool v) override { return Value(v ? "true" : "false"); }
  bool number_integer(number_integer_t v) override { return Value(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return Value(std::to_string(v)); }
  bool number_float(number_float_t /*v*/, const string_t& raw) override { return Value(raw); }
  bool string(string_t& v) override { return Value(std::move(v)); }
  bool binary(binary_t& /*v*/) override { return Refuse("binary values are not allowed"); }

  bool start_object(std::size_t /*size*/) override {
    if (depth_ == 0 && !done_) {
      depth_ = 1;
      return true;
    }
    return Nested("an object");
  }
  bool end_object() override {
    depth_ = 0;
    done_ = true;
    return true;
  }
  bool start_array(std::size_t /*size*/) override {
    if (depth_ == 0) return Refuse("the workload must be a JSON object, not an array");
    return Nested("an array");
  }
  bool end_array() override { return true; }

  bool key(string_t& k) override {
    if (!keys_.insert(k).second) {
      return Refuse("parameter '" + Sanitize(k, 60) + "' is given twice");
    }
    key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    // ex.what() quotes the offending input, which may be invalid UTF-8: keep only the part
    // after the library's own prefix, sanitised.
    std::string_view what = ex.what();
    if (auto colon = what.find(": "); colon != std::string_view::npos) {
      what.remove_prefix(colon + 2);
    }
    if (auto last = what.find("; last read"); last != std::string_view::npos) {
      what = what.substr(0, last);
    }
    return Refuse("invalid JSON at byte " + std::to_string(position) + ": " + Sanitize(what));
  }

  [[nodiscard]] const std::string& reason() const { return reason_; }
  RequestParameters params;

 private:
  bool Value(std::optional<std::string> v) {
    if (depth_ == 0) return Refuse("the workload must be a JSON object of parameters");
    params.emplace_back(std::move(key_), std::move(v));
    return true;
  }
  bool Nested(std::string_view what) {
    return Refuse("parameter '" + Sanitize(key_, 60) + "' is " + std::string(what) +
                  "; values must be strings, numbers or booleans");
  }
  bool Refuse(std::string reason) {
    if (reason_.empty()) reason_ = std::move(reason);
    return false;
  }

  int depth_ = 0;
  bool done_ = false;
  std::string key_;
  std::set<std::string, std::less<>> keys_;
  std::string reason_;
};

bool MatchesAny(const std::vector<std::string>& patterns, const std::string& name) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
    return ::fnmatch(p.c_str(), name.c_str(), 0) == 0;
  });
}

std::string JoinChoices(const std::vector<std::string>& choices) {
  std::string out;
  for (const auto& c : choices) out += (out.empty() ? "" : ", ") + c;
  return out;
}

}  // namespace

bool IsTrueFlag(std::string_view value) {
  return value == "1" || value == "true" || value == "True" || value == "TRUE";
}

tl::expected<RequestParameters, Error> ParseWorkload(std::string_view workload) {
  if (workload.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return BadRequest("the workload is empty; send a JSON object of parameters, e.g. {}");
  }
  // JSON text never holds a raw NUL, and the parser would take one for the end of the input
  // (and ignore what follows).
  if (auto nul = workload.find('\0'); nul != std::string_view::npos) {
    return BadRequest("invalid JSON at byte " + std::to_string(nul + 1) + ": a NUL byte");
  }
  FlatObjectSax sax;
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(workload.begin(), workload.end(), &sax,
                                   nlohmann::json::input_format_t::json, /*strict=*/true);
  } catch (const std::exception& e) {
    return BadRequest("invalid JSON: " + Sanitize(e.what()));
  }
  if (!ok) {
    return BadRequest(sax.reason().empty() ? "invalid JSON workload" : sax.reason());
  }
  return std::move(sax.params);
}

tl::expected<BoundRequest, Error> BindParameters(const JobSpec& job,
                                                 const RequestParameters& params,
                                                 const RequestPolicy& policy) {
  BoundRequest bound;
  std::vector<std::string> problems;
  std::set<std::string, std::less<>> given;
  for (const auto& [name, value] : params) {
    if (!value) continue;  // null: not given
    // Checked for every value, passed on or not: the message names what to fix.
    if (value->find('\0') != std::string::npos) {
      problems.push_back("parameter '" + Sanitize(name, 60) +
                         "' holds a NUL byte, which an environment variable cannot");
      continue;
    }
    if (name.size() + 1 + value->size() > kMaxVariableBytes) {
      problems.push_back("parameter '" + Sanitize(name, 60) + "' is " +
                         std::to_string(value->size()) + " bytes long; with its name it may be " +
                         "at most " + std::to_string(kMaxVariableBytes) + " (the kernel's limit " +
                         "for one environment variable)");
      continue;
    }
    if (name == kOfflineParameter && IsTrueFlag(*value)) bound.offline_when_complete = true;
    if (IsForbiddenRequestName(name)) {
      problems.push_back("parameter '" + Sanitize(name, 60) + "' may not be set by a request");
      continue;
    }
    if (job.FindParameter(name) != nullptr) {
      given.insert(name);
      bound.parameters[name] = *value;
    } else if (MatchesAny(policy.pass_through, name)) {
      if (!IsValidVariableName(name)) {
        problems.push_back("parameter name '" + Sanitize(name, 60) +
                           "' is not a valid variable name");
        continue;
      }
      bound.parameters[name] = *value;
    } else {
      bound.dropped.push_back(Sanitize(name, 60));
    }
  }
  for (const auto& p : job.parameters) {
    auto it = bound.parameters.find(p.name);
    if (it == bound.parameters.end() && p.default_value) {
      it = bound.parameters.emplace(p.name, *p.default_value).first;
    }
    if (p.required && (it == bound.parameters.end() || it->second.empty())) {
      problems.push_back("missing required parameter '" + p.name + "'");
      continue;
    }
    if (it == bound.parameters.end()) continue;
    if (!p.choices.empty() &&
        std::find(p.choices.begin(), p.choices.end(), it->second) == p.choices.end()) {
      // A secret's value is not echoed, even when it is wrong.
      std::string shown = p.secret ? "the given value" : "'" + Sanitize(it->second, 60) + "'";
      problems.push_back("parameter '" + p.name + "' must be one of " + JoinChoices(p.choices) +
                         ", not " + shown);
      continue;
    }
    if (p.secret) {
      bound.secret_names.push_back(p.name);
      if (!it->second.empty()) bound.secret_values.push_back(it->second);
    }
  }
  if (!problems.empty()) {
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
    return BadRequest(message);
  }
  return bound;
}

tl::expected<BoundRequest, Error> BindRequest(const JobSpec& job, std::string_view workload,
                                              const RequestPolicy& policy) {
  auto params = ParseWorkload(workload);
  if (!params) return tl::unexpected(params.error());
  return BindParameters(job, *params, policy);
}

tl::expected<std::string, std::string> SubstituteParameters(std::string_view text,
                                                            const EnvMap& parameters) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto open = text.find("${", at);
    auto close = open == std::string_view::npos ? open : text.find('}', open);
    if (open == std::string_view::npos || close == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    out.append(text.substr(at, open - at));
    std::string name(text.substr(open + 2, close - open - 2));
    auto it = parameters.find(name);
    if (it == parameters.end()) {
      return tl::unexpected("${" + name + "} is used but the build has no parameter " + name);
    }
    out += it->second;
    at = close + 1;
  }
  return out;
}

}  // namespace gearrun::jobs
