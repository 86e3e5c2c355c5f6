// Build requests: the JSON workload of a `build:<job>` request, checked against the
// protocol's rules and bound to a job's parameter declarations.
//
// Protocol rules (shared/protocol.md): the workload is one flat JSON object; values are
// strings, numbers or booleans (numbers and booleans become their JSON text); null means
// "not given". Anything else is a bad request with a one-line reason: also bytes after the
// object (a NUL included), and a value that could not reach the build's environment (one
// holding a NUL byte, or one whose NAME=value is longer than the kernel takes for one
// variable). A request that binds is one a build can start with.
//
//   auto bound = BindRequest(job, workload, RequestPolicy{});
//   if (!bound) ReplyException(bound.error().message);   // then WORK_FAIL
//   else Run(job, bound->parameters);
//
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

#include "jobs/error.h"
#include "jobs/job_spec.h"

namespace gearrun::jobs {

// Parameters as a request sent them, in order; nullopt for JSON null.
using RequestParameters = std::vector<std::pair<std::string, std::optional<std::string>>>;

// Node-level policy for parameters a job does not declare.
struct RequestPolicy {
  // Shell-style patterns ('*', '?', [...]) of undeclared names that still reach the build.
  std::vector<std::string> pass_through = {"ZUUL_*", "BASE_LOG_PATH", "LOG_PATH",
                                           "OFFLINE_NODE_WHEN_COMPLETE"};
};

struct BoundRequest {
  EnvMap parameters;                       // what the build's environment gets from the request
  std::vector<std::string> secret_names;   // declared secret parameters that have a value
  std::vector<std::string> secret_values;  // their non-empty values, for masking
  std::vector<std::string> dropped;    // undeclared names left out (sanitised, for the build log)
  bool offline_when_complete = false;  // OFFLINE_NODE_WHEN_COMPLETE was true
};

inline constexpr std::string_view kOfflineParameter = "OFFLINE_NODE_WHEN_COMPLETE";

// Parses a workload. Errors (code kBadRequest) are one line of printable ASCII.
[[nodiscard]] tl::expected<RequestParameters, Error> ParseWorkload(std::string_view workload);

// Applies the job's declarations: defaults, required (given and non-empty), choices,
// secrets; drops undeclared names unless `policy` passes them through; refuses names a
// request may never set (IsForbiddenRequestName), declared or not.
[[nodiscard]] tl::expected<BoundRequest, Error> BindParameters(const JobSpec& job,
                                                               const RequestParameters& params,
                                                               const RequestPolicy& policy);

// ParseWorkload then BindParameters.
[[nodiscard]] tl::expected<BoundRequest, Error> BindRequest(const JobSpec& job,
                                                            std::string_view workload,
                                                            const RequestPolicy& policy);

// Replaces each ${NAME} in `text` with the bound parameter's value (checkout url and
// ref). Error: a referenced parameter that the request did not give (and has no default).
[[nodiscard]] tl::expected<std::string, std::string> SubstituteParameters(std::string_view text,
                                                                          const EnvMap& parameters);

// `1`, `true`, `True`, `TRUE`: how OFFLINE_NODE_WHEN_COMPLETE says yes.
[[nodiscard]] bool IsTrueFlag(std::string_view value);

}  // namespace gearrun::jobs
