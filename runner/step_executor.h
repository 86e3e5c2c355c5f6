// StepExecutor: the seam between a build's logic and the processes that run its steps.
// The real one (ContainerExecutor) runs each attempt in the build's sandbox::Container;
// tests of the build logic use a scripted fake.
//
// An executor belongs to one build and is used from that build's thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "sandbox/cancel.h"
#include "sandbox/container.h"
#include "sandbox/process.h"

namespace gearrun::runner {

struct Attempt {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value", exactly
  std::filesystem::path dir;
  sandbox::KillPolicy kill;
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  // Runs one attempt. An error means it could not be started (or its wait failed).
  [[nodiscard]] virtual tl::expected<sandbox::Outcome, std::string> Run(
      const Attempt& attempt, sandbox::OutputSink& output, const sandbox::CancelToken& cancel) = 0;
  // Ends every process the build still has; returns how many there were.
  [[nodiscard]] virtual tl::expected<int, std::string> KillAll(const sandbox::KillPolicy& policy,
                                                               sandbox::OutputSink& output) = 0;
  // "cgroup" or "process-group".
  [[nodiscard]] virtual std::string containment() const = 0;
};

class ContainerExecutor final : public StepExecutor {
 public:
  [[nodiscard]] static tl::expected<std::unique_ptr<ContainerExecutor>, std::string> Create(
      const sandbox::ContainerOptions& options, sandbox::ResourceLimits limits);

  tl::expected<sandbox::Outcome, std::string> Run(const Attempt& attempt,
                                                  sandbox::OutputSink& output,
                                                  const sandbox::CancelToken& cancel) override;
  tl::expected<int, std::string> KillAll(const sandbox::KillPolicy& policy,
                                         sandbox::OutputSink& output) override;
  std::string containment() const override;
  [[nodiscard]] std::string cookie() const { return std::string(container_.cookie_variable()); }
  [[nodiscard]] std::string cgroup() const { return container_.cgroup_directory().string(); }
  // Which build-wide limits the sandbox could apply, for the log: "memory 2147483648 bytes
  // (cgroup v1)", "pids 100 not applied (no cgroup controller)"; empty when none were asked.
  [[nodiscard]] std::string DescribeLimits(const std::optional<std::uint64_t>& memory_max,
                                           const std::optional<std::uint64_t>& pids_max) const;

 private:
  ContainerExecutor(sandbox::Container container, sandbox::ResourceLimits limits)
      : container_(std::move(container)), limits_(limits) {}

  sandbox::Container container_;
  sandbox::ResourceLimits limits_;
};

}  // namespace gearrun::runner
