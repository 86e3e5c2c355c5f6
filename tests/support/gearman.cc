#include "tests/support/gearman.h"

#include <arpa/inet.h>
#include <libgearman/gearman.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <sstream>
#include <utility>

#include "tests/support/command.h"

namespace gearrun::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kGearmand[] = "/usr/sbin/gearmand";
constexpr milliseconds kReadyTimeout{10'000};
constexpr milliseconds kAdminTimeout{5'000};
// How long one gearman_client_run_tasks call may wait for a packet: the longest a stop request
// or a passed deadline goes unnoticed.
constexpr int kSliceMs = 100;
// Connecting, the "exceptions" option round trip, and a background submission.
constexpr int kSetupTimeoutMs = 5'000;

// An fd closed when it goes out of scope.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

enum class Reply {
  kLine,     // one line: "OK ...", "ERR ..."
  kListing,  // lines up to a line "."
};

// Sends one admin command and returns the answer's lines without line ends (for a listing,
// without the final "."). nullopt on any failure, and for an "ERR ..." answer to a listing.
std::optional<std::vector<std::string>> AdminExchange(int port, std::string_view command,
                                                      Reply reply) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) return std::nullopt;
  timeval timeout{};
  timeout.tv_sec = kAdminTimeout.count() / 1000;
  // SO_SNDTIMEO bounds connect() too.
  if (::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
      ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0) {
    return std::nullopt;
  }
  sockaddr_in address = Loopback(port);
  if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return std::nullopt;
  }
  if (!SendAll(socket.get(), std::string(command) + "\n")) return std::nullopt;

  auto deadline = Clock::now() + kAdminTimeout;
  std::vector<std::string> lines;
  std::string pending;
  char buffer[4096];
  while (Clock::now() < deadline) {
    ssize_t n = ::recv(socket.get(), buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;  // closed, or SO_RCVTIMEO passed
    pending.append(buffer, static_cast<size_t>(n));
    size_t end;
    while ((end = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, end);
      pending.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (reply == Reply::kLine) return std::vector<std::string>{line};
      if (line == ".") return lines;
      if (lines.empty() && line.starts_with("ERR ")) return std::nullopt;
      lines.push_back(std::move(line));
    }
  }
  return std::nullopt;
}

std::vector<std::string> SplitWords(std::string_view text, char separator) {
  std::vector<std::string> words;
  std::string word;
  std::istringstream in{std::string(text)};
  while (std::getline(in, word, separator)) {
    if (!word.empty()) words.push_back(word);
  }
  return words;
}

std::optional<int> ToInt(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// ---- The client -------------------------------------------------------------------------

// Where a task's callbacks record what arrives, and how a waiting thread learns of it.
struct Sink {
  mutable std::mutex mu;
  mutable std::condition_variable changed;
  ClientTrace trace;
  bool done = false;

  void Add(ClientEvent event) {
    std::lock_guard lock(mu);
    if (event.kind == ClientEvent::Kind::kCreated) trace.handle = event.data;
    trace.events.push_back(std::move(event));
    changed.notify_all();
  }
  void SetError(std::string error) {
    std::lock_guard lock(mu);
    trace.error = std::move(error);
  }
  void SetTimedOut() {
    std::lock_guard lock(mu);
    trace.timed_out = true;
  }
  void Finish() {
    std::lock_guard lock(mu);
    done = true;
    changed.notify_all();
  }
  ClientTrace Copy() const {
    std::lock_guard lock(mu);
    return trace;
  }
};

Sink& SinkOf(gearman_task_st* task) { return *static_cast<Sink*>(gearman_task_context(task)); }

std::string TaskData(gearman_task_st* task) {
  const void* data = gearman_task_data(task);
  if (data == nullptr) return {};
  return std::string(static_cast<const char*>(data), gearman_task_data_size(task));
}

gearman_return_t OnCreated(gearman_task_st* task) {
  const char* handle = gearman_task_job_handle(task);
  SinkOf(task).Add({.kind = ClientEvent::Kind::kCreated, .data = handle ? handle : ""});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnData(gearman_task_st* task) {
  SinkOf(task).Add({.kind = ClientEvent::Kind::kData, .data = TaskData(task)});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnWarning(gearman_task_st* task) {
  SinkOf(task).Add({.kind = ClientEvent::Kind::kWarning, .data = TaskData(task)});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnStatus(gearman_task_st* task) {
  SinkOf(task).Add({.kind = ClientEvent::Kind::kStatus,
                    .numerator = gearman_task_numerator(task),
                    .denominator = gearman_task_denominator(task)});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnComplete(gearman_task_st* task) {
  SinkOf(task).Add({.kind = ClientEvent::Kind::kComplete, .data = TaskData(task)});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnException(gearman_task_st* task) {
  // libgearman keeps the text apart (gearman_task_exception) when the packet has it as data.
  std::string text;
  if (gearman_task_has_exception(task)) {
    gearman_string_t exception = gearman_task_exception(task);
    text.assign(exception.c_str, exception.size);
  } else {
    text = TaskData(task);
  }
  SinkOf(task).Add({.kind = ClientEvent::Kind::kException, .data = std::move(text)});
  return GEARMAN_SUCCESS;
}

gearman_return_t OnFail(gearman_task_st* task) {
  SinkOf(task).Add({.kind = ClientEvent::Kind::kFail});
  return GEARMAN_SUCCESS;
}

std::string ErrorText(gearman_client_st* client, gearman_return_t rc) {
  const char* text = client ? gearman_client_error(client) : nullptr;
  std::string error = gearman_strerror(rc);
  if (text != nullptr && *text != '\0') error += std::string(": ") + text;
  return error;
}

struct ClientDeleter {
  void operator()(gearman_client_st* client) const { gearman_client_free(client); }
};
using ClientPtr = std::unique_ptr<gearman_client_st, ClientDeleter>;

// A client of 127.0.0.1:port alone, with our callbacks and, when asked for, the exceptions
// option already accepted by gearmand. nullptr and *error on failure.
ClientPtr OpenClient(int port, const ClientOptions& options, std::string* error) {
  // libgearman adds the servers in GEARMAN_SERVERS to every new client; a developer's
  // setting must not send test jobs elsewhere. Only touched when set: unsetenv races with
  // getenv on other threads.
  if (::getenv("GEARMAN_SERVERS") != nullptr) ::unsetenv("GEARMAN_SERVERS");
  ClientPtr client(gearman_client_create(nullptr));
  if (!client) {
    *error = "gearman_client_create failed";
    return nullptr;
  }
  gearman_client_remove_servers(client.get());
  gearman_return_t rc =
      gearman_client_add_server(client.get(), "127.0.0.1", static_cast<in_port_t>(port));
  if (gearman_failed(rc)) {
    *error = ErrorText(client.get(), rc);
    return nullptr;
  }
  gearman_client_set_timeout(client.get(), kSetupTimeoutMs);
  if (options.exceptions) {
    // Sends OPTION_REQ "exceptions" and waits for the answer; the option lives on this
    // connection only (a reconnect would lose it).
    gearman_client_add_options(client.get(), GEARMAN_CLIENT_EXCEPTION);
    if (!gearman_client_has_option(client.get(), GEARMAN_CLIENT_EXCEPTION)) {
      *error = "cannot set the exceptions option: " +
               ErrorText(client.get(), gearman_client_error_code(client.get()));
      return nullptr;
    }
  }
  gearman_client_set_created_fn(client.get(), OnCreated);
  gearman_client_set_data_fn(client.get(), OnData);
  gearman_client_set_warning_fn(client.get(), OnWarning);
  gearman_client_set_status_fn(client.get(), OnStatus);
  gearman_client_set_complete_fn(client.get(), OnComplete);
  gearman_client_set_exception_fn(client.get(), OnException);
  gearman_client_set_fail_fn(client.get(), OnFail);
  gearman_client_set_timeout(client.get(), kSliceMs);
  return client;
}

// Adds the foreground task whose events go to `sink`. False (with the error in the sink)
// when libgearman refuses it.
bool AddTask(gearman_client_st* client, Sink& sink, const std::string& function,
             const std::string& workload, const std::string& unique) {
  gearman_return_t rc = GEARMAN_SUCCESS;
  gearman_task_st* task = gearman_client_add_task(client, nullptr, &sink, function.c_str(),
                                                  unique.empty() ? nullptr : unique.c_str(),
                                                  workload.data(), workload.size(), &rc);
  if (task == nullptr || gearman_failed(rc)) {
    sink.SetError(ErrorText(client, rc));
    return false;
  }
  return true;
}

// Runs the client's tasks in slices of kSliceMs until they end, an error, the deadline, or
// `stop`.
void Drive(gearman_client_st* client, Sink& sink, Clock::time_point deadline,
           const std::atomic<bool>& stop) {
  while (true) {
    gearman_return_t rc = gearman_client_run_tasks(client);
    if (rc == GEARMAN_SUCCESS) return;  // no task left running
    if (rc == GEARMAN_TIMEOUT || rc == GEARMAN_IO_WAIT || rc == GEARMAN_PAUSE) {
      if (stop.load() || Clock::now() >= deadline) {
        sink.SetTimedOut();
        return;
      }
      continue;
    }
    sink.SetError(ErrorText(client, rc));
    return;
  }
}

}  // namespace

// ---- Ports and gearmand -----------------------------------------------------------------

int FreeLoopbackPort() {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) return -1;
  sockaddr_in address = Loopback(0);
  if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return -1;
  }
  socklen_t size = sizeof address;
  if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &size) != 0) return -1;
  return ntohs(address.sin_port);
}

Gearmand::Gearmand(GearmandOptions options)
    : extra_args_(std::move(options.extra_args)),
      port_(options.port),
      dir_(std::make_unique<TempDir>()) {
  if (port_ == 0) port_ = FreeLoopbackPort();
  Start();
}

Gearmand::~Gearmand() { Kill(); }

std::string Gearmand::address() const { return "127.0.0.1:" + std::to_string(port_); }

int Gearmand::pid() const { return process_ ? process_->pid() : -1; }

std::string Gearmand::log() const {
  std::string text = ReadFile(*dir_ / "gearmand.log");
  if (!last_stderr_.empty()) text += "\n[gearmand stderr]\n" + last_stderr_;
  return text;
}

void Gearmand::Kill() {
  ready_ = false;
  if (!process_) return;
  process_->Signal(SIGKILL);
  CommandResult result = process_->Wait(std::chrono::seconds(5));
  last_stderr_ = result.err;
  process_.reset();
}

bool Gearmand::Restart() {
  Kill();
  return Start();
}

bool Gearmand::Start() {
  ready_ = false;
  last_stderr_.clear();
  if (port_ <= 0) {
    last_stderr_ = "no free loopback port";
    return false;
  }
  if (!std::filesystem::exists(kGearmand)) {
    last_stderr_ = std::string(kGearmand) + " is missing (Debian package gearman-job-server)";
    return false;
  }
  std::vector<std::string> argv = {
      kGearmand,
      "--listen=127.0.0.1",
      "--port=" + std::to_string(port_),
      // One I/O thread is plenty for a test (0 would mean "as many as the machine has").
      "--threads=1",
      "--log-file=" + (*dir_ / "gearmand.log").string(),
      "--verbose=INFO",
      "--pid-file=" + (*dir_ / "gearmand.pid").string(),
      // No /etc/gearmand.conf from the machine.
      "--config-file=/dev/null",
  };
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  try {
    process_ = std::make_unique<BackgroundCommand>(argv);
  } catch (const std::exception& e) {
    last_stderr_ = std::string("cannot start gearmand: ") + e.what();
    return false;
  }

  // gearmand retries a bind that fails with EADDRINUSE by itself (silently, even at INFO);
  // we wait for it to answer.
  auto deadline = Clock::now() + kReadyTimeout;
  while (Clock::now() < deadline) {
    if (!ProcessAlive(process_->pid())) {
      CommandResult result = process_->Wait(std::chrono::seconds(5));
      last_stderr_ = result.err;
      process_.reset();
      return false;
    }
    if (AdminVersion(port_).starts_with("OK")) {
      ready_ = true;
      return true;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

// ---- Admin protocol ---------------------------------------------------------------------

std::vector<FunctionStatus> AdminStatus(int port) {
  auto lines = AdminExchange(port, "status", Reply::kListing);
  if (!lines) return {};
  std::vector<FunctionStatus> result;
  for (const std::string& line : *lines) {
    std::vector<std::string> fields = SplitWords(line, '\t');
    if (fields.size() != 4) return {};
    auto queued = ToInt(fields[1]), running = ToInt(fields[2]), workers = ToInt(fields[3]);
    if (!queued || !running || !workers) return {};
    result.push_back(
        {.function = fields[0], .queued = *queued, .running = *running, .workers = *workers});
  }
  return result;
}

std::vector<WorkerInfo> AdminWorkers(int port) {
  auto lines = AdminExchange(port, "workers", Reply::kListing);
  if (!lines) return {};
  std::vector<WorkerInfo> result;
  for (std::string_view line : *lines) {
    // "<fd> <ip> <client id> : <function> <function> ..."; the id may hold spaces.
    size_t ip = line.find(' ');
    size_t id = ip == std::string_view::npos ? ip : line.find(' ', ip + 1);
    size_t colon = line.rfind(" :");
    if (id == std::string_view::npos || colon == std::string_view::npos || colon < id) return {};
    result.push_back({.ip = std::string(line.substr(ip + 1, id - ip - 1)),
                      .client_id = std::string(line.substr(id + 1, colon - id - 1)),
                      .functions = SplitWords(line.substr(colon + 2), ' ')});
  }
  return result;
}

int WorkersFor(int port, std::string_view function) {
  for (const FunctionStatus& status : AdminStatus(port)) {
    if (status.function == function) return status.workers;
  }
  return 0;
}

int QueuedFor(int port, std::string_view function) {
  for (const FunctionStatus& status : AdminStatus(port)) {
    if (status.function == function) return status.queued;
  }
  return 0;
}

bool AdminCancel(int port, std::string_view handle) {
  auto lines = AdminExchange(port, "cancel job " + std::string(handle), Reply::kLine);
  return lines && lines->front() == "OK";
}

std::string AdminVersion(int port) {
  auto lines = AdminExchange(port, "version", Reply::kLine);
  return lines ? lines->front() : std::string();
}

// ---- Traces -----------------------------------------------------------------------------

std::string_view KindName(ClientEvent::Kind kind) {
  switch (kind) {
    case ClientEvent::Kind::kCreated:
      return "CREATED";
    case ClientEvent::Kind::kData:
      return "DATA";
    case ClientEvent::Kind::kWarning:
      return "WARNING";
    case ClientEvent::Kind::kStatus:
      return "STATUS";
    case ClientEvent::Kind::kComplete:
      return "COMPLETE";
    case ClientEvent::Kind::kFail:
      return "FAIL";
    case ClientEvent::Kind::kException:
      return "EXCEPTION";
  }
  return "?";
}

const ClientEvent* ClientTrace::Last() const { return events.empty() ? nullptr : &events.back(); }

bool ClientTrace::Completed() const {
  return Last() != nullptr && Last()->kind == ClientEvent::Kind::kComplete;
}

bool ClientTrace::Failed() const {
  return Last() != nullptr && Last()->kind == ClientEvent::Kind::kFail;
}

std::string ClientTrace::Kinds() const {
  std::string kinds;
  for (const ClientEvent& event : events) {
    if (event.kind == ClientEvent::Kind::kCreated) continue;
    if (!kinds.empty()) kinds += ' ';
    kinds += KindName(event.kind);
  }
  return kinds;
}

std::vector<ClientEvent> ClientTrace::Of(ClientEvent::Kind kind) const {
  std::vector<ClientEvent> result;
  for (const ClientEvent& event : events) {
    if (event.kind == kind) result.push_back(event);
  }
  return result;
}

std::string ClientTrace::Describe() const {
  std::ostringstream out;
  out << "handle: " << (handle.empty() ? "(none)" : handle) << ", timed_out: " << timed_out
      << ", error: " << (error.empty() ? "(none)" : error) << ", events:";
  if (events.empty()) out << " (none)";
  for (const ClientEvent& event : events) {
    out << "\n  " << KindName(event.kind);
    if (event.kind == ClientEvent::Kind::kStatus) {
      out << " " << event.numerator << "/" << event.denominator;
    } else if (!event.data.empty()) {
      out << " \"" << event.data << "\"";
    }
  }
  return out.str();
}

// ---- GearmanClient ----------------------------------------------------------------------

GearmanClient::GearmanClient(int port, ClientOptions options) : port_(port), options_(options) {}

GearmanClient::~GearmanClient() = default;

ClientTrace GearmanClient::Submit(std::string function, std::string workload, std::string unique,
                                  std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  Sink sink;
  std::string error;
  ClientPtr client = OpenClient(port_, options_, &error);
  if (!client) {
    sink.SetError(error);
  } else if (AddTask(client.get(), sink, function, workload, unique)) {
    std::atomic<bool> never{false};
    Drive(client.get(), sink, deadline, never);
  }
  return sink.Copy();
}

std::string GearmanClient::SubmitBackground(std::string function, std::string workload,
                                            std::string unique) {
  last_error_.clear();
  ClientPtr client = OpenClient(port_, options_, &last_error_);
  if (!client) return {};
  // One blocking round trip (SUBMIT_JOB_BG, JOB_CREATED): give it the setup timeout.
  gearman_client_set_timeout(client.get(), kSetupTimeoutMs);
  gearman_job_handle_t handle{};
  gearman_return_t rc = gearman_client_do_background(client.get(), function.c_str(),
                                                     unique.empty() ? nullptr : unique.c_str(),
                                                     workload.data(), workload.size(), handle);
  if (gearman_failed(rc)) {
    last_error_ = ErrorText(client.get(), rc);
    return {};
  }
  return handle;
}

std::string GearmanClient::last_error() const { return last_error_; }

// ---- PendingJob -------------------------------------------------------------------------

struct PendingJob::State {
  std::string function, workload, unique;  // outlive the task that points at them
  Sink sink;                               // outlives the client whose tasks point at it
  ClientPtr client;
  std::atomic<bool> stop{false};
};

std::unique_ptr<PendingJob> GearmanClient::Start(std::string function, std::string workload,
                                                 std::string unique) {
  auto state = std::make_unique<PendingJob::State>();
  state->function = std::move(function);
  state->workload = std::move(workload);
  state->unique = std::move(unique);
  // Connect and add the task here, so that GEARMAN_SERVERS is handled on the caller's thread;
  // the job's thread only runs the tasks.
  std::string error;
  state->client = OpenClient(port_, options_, &error);
  if (!state->client) {
    state->sink.SetError(error);
  } else if (!AddTask(state->client.get(), state->sink, state->function, state->workload,
                      state->unique)) {
    state->client.reset();
  }
  return std::unique_ptr<PendingJob>(new PendingJob(std::move(state)));
}

PendingJob::PendingJob(std::unique_ptr<State> state) : state_(std::move(state)) {
  if (!state_->client) {
    state_->sink.Finish();
    return;
  }
  thread_ = std::thread([state = state_.get()] {
    Drive(state->client.get(), state->sink, Clock::time_point::max(), state->stop);
    // Close the connection now: a stopped job's client is gone for gearmand as well.
    state->client.reset();
    state->sink.Finish();
  });
}

PendingJob::~PendingJob() {
  state_->stop = true;
  if (thread_.joinable()) thread_.join();
}

ClientTrace PendingJob::Snapshot() const { return state_->sink.Copy(); }

bool PendingJob::WaitForEvent(ClientEvent::Kind kind, std::chrono::milliseconds timeout) const {
  const Sink& sink = state_->sink;
  auto has_kind = [&] {
    for (const ClientEvent& event : sink.trace.events) {
      if (event.kind == kind) return true;
    }
    return false;
  };
  std::unique_lock lock(sink.mu);
  sink.changed.wait_for(lock, timeout, [&] { return has_kind() || sink.done; });
  return has_kind();
}

ClientTrace PendingJob::Wait(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(state_->sink.mu);
    state_->sink.changed.wait_for(lock, timeout, [&] { return state_->sink.done; });
  }
  state_->stop = true;  // no-op when it ended; else Drive sees it within kSliceMs
  if (thread_.joinable()) thread_.join();
  return state_->sink.Copy();
}

}  // namespace gearrun::testing
