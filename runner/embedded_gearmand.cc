#include "runner/embedded_gearmand.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>

#include "runner/gearman_admin.h"

namespace gearrun::runner {
namespace {

constexpr std::chrono::seconds kStartTimeout{10};

// gearmand's own lines (it logs to its file; this is what it says on stderr).
class DaemonLogSink : public sandbox::OutputSink {
 public:
  void Write(std::string_view bytes) override {
    std::string_view rest = bytes;
    while (!rest.empty()) {
      auto eol = rest.find('\n');
      std::string_view line = rest.substr(0, eol);
      if (!line.empty()) spdlog::info("gearmand: {}", line);
      if (eol == std::string_view::npos) break;
      rest.remove_prefix(eol + 1);
    }
  }
};

// Debian installs gearmand in /usr/sbin, which is not on every user's PATH.
std::string FindGearmand() {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/usr/local/sbin";
  std::size_t start = 0;
  while (start <= path.size()) {
    auto colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? path.npos : colon - start);
    if (!dir.empty() && dir.front() == '/') {
      std::string candidate = dir + "/gearmand";
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return {};
}

}  // namespace

bool Listening(const ServerAddress& server, std::chrono::milliseconds timeout) {
  return ConnectWithin(server, timeout).has_value();
}

tl::expected<std::unique_ptr<EmbeddedGearmand>, std::string> EmbeddedGearmand::Start(
    const std::filesystem::path& log_file) {
  std::string program = FindGearmand();
  if (program.empty()) {
    return tl::unexpected(
        std::string("no Gearman server is configured and gearmand is not installed. Install it "
                    "(Debian and Ubuntu: apt install gearman-job-server) to let gearrun serve "
                    "run one on 127.0.0.1:4730, or point it at a server with --server "
                    "HOST:PORT (servers: in the configuration file)"));
  }
  auto container = sandbox::Container::Create({.name = "gearmand"});
  if (!container) return tl::unexpected("cannot start gearmand: " + container.error().ToString());
  auto cancel = sandbox::CancelToken::Create();
  if (!cancel) return tl::unexpected("cannot start gearmand: " + cancel.error().ToString());

  std::unique_ptr<EmbeddedGearmand> self(
      new EmbeddedGearmand(std::move(*container), std::move(*cancel), program));
  sandbox::Command command{.argv = {program, "--listen=" + kDefaultServer.host,
                                    "--port=" + std::to_string(kDefaultServer.port), "--threads=1",
                                    "--log-file=" + log_file.string(), "--verbose=WARNING"},
                           .env = {"PATH=/usr/bin:/bin"},
                           .dir = "/",
                           .limits = {},
                           .kill = {.signal = SIGTERM, .grace = std::chrono::seconds(5)},
                           .deadline = std::nullopt};
  EmbeddedGearmand* raw = self.get();
  raw->thread_ = std::thread([raw, command] {
    DaemonLogSink sink;
    auto outcome = raw->container_.Run(command, sink, raw->cancel_);
    if (!outcome) {
      raw->exit_reason_ = outcome.error().ToString();
    } else if (outcome->ending == sandbox::Outcome::Ending::kExited) {
      raw->exit_reason_ = "it exited with status " + std::to_string(outcome->exit_code);
    } else if (outcome->ending == sandbox::Outcome::Ending::kSignaled) {
      raw->exit_reason_ = "it was killed by signal " + std::to_string(outcome->signal);
    }
    sandbox::DiscardSink discard;
    (void)raw->container_.KillAll({.signal = SIGKILL, .grace = std::chrono::seconds(1)}, discard);
    raw->exited_.store(true);
    if (!raw->cancel_.cancelled())
      spdlog::error("the embedded gearmand stopped: {}", raw->exit_reason_);
  });

  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!Listening(kDefaultServer, std::chrono::milliseconds(200))) {
    if (raw->exited_.load() || std::chrono::steady_clock::now() >= deadline) {
      std::string why = raw->exited_.load() ? raw->exit_reason_ : "it did not listen within 10s";
      return tl::unexpected("gearmand (" + program + ") did not start on " +
                            kDefaultServer.ToString() + ": " + why + "; its log is " +
                            log_file.string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return self;
}

EmbeddedGearmand::EmbeddedGearmand(sandbox::Container container, sandbox::CancelToken cancel,
                                   std::string program)
    : container_(std::move(container)), cancel_(std::move(cancel)), program_(std::move(program)) {}

EmbeddedGearmand::~EmbeddedGearmand() {
  cancel_.Cancel();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gearrun::runner
