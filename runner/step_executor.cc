#include "runner/step_executor.h"

namespace gearrun::runner {

tl::expected<std::unique_ptr<ContainerExecutor>, std::string> ContainerExecutor::Create(
    const sandbox::ContainerOptions& options, sandbox::ResourceLimits limits) {
  auto container = sandbox::Container::Create(options);
  if (!container) return tl::unexpected(container.error().ToString());
  return std::unique_ptr<ContainerExecutor>(new ContainerExecutor(std::move(*container), limits));
}

tl::expected<sandbox::Outcome, std::string> ContainerExecutor::Run(
    const Attempt& attempt, sandbox::OutputSink& output, const sandbox::CancelToken& cancel) {
  sandbox::Command command{.argv = attempt.argv,
                           .env = attempt.env,
                           .dir = attempt.dir,
                           .limits = limits_,
                           .kill = attempt.kill,
                           .deadline = attempt.deadline};
  auto outcome = container_.Run(command, output, cancel);
  if (!outcome) return tl::unexpected(outcome.error().ToString());
  return *outcome;
}

tl::expected<int, std::string> ContainerExecutor::KillAll(const sandbox::KillPolicy& policy,
                                                          sandbox::OutputSink& output) {
  auto killed = container_.KillAll(policy, output);
  if (!killed) return tl::unexpected(killed.error().ToString());
  return *killed;
}

std::string ContainerExecutor::containment() const {
  return container_.mode() == sandbox::ContainmentMode::kCgroup ? "cgroup" : "process-group";
}

}  // namespace gearrun::runner

namespace gearrun::runner {

std::string ContainerExecutor::DescribeLimits(const std::optional<std::uint64_t>& memory_max,
                                              const std::optional<std::uint64_t>& pids_max) const {
  const auto& in_force = container_.limits_in_force();
  std::string out;
  auto describe = [&](const char* what, const std::optional<std::uint64_t>& asked,
                      sandbox::LimitMechanism how, const char* unit) {
    if (!asked) return;
    if (!out.empty()) out += ", ";
    out += std::string(what) + " " + std::to_string(*asked) + unit;
    out += how == sandbox::LimitMechanism::kNone ? " not applied (no cgroup controller available)"
                                                 : " (" + std::string(sandbox::ToString(how)) + ")";
  };
  describe("memory", memory_max, in_force.memory, " bytes");
  describe("pids", pids_max, in_force.pids, "");
  return out;
}

}  // namespace gearrun::runner
