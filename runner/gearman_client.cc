// The libgearman client adapter.
#include "runner/gearman_client.h"

#include <libgearman-1.0/gearman.h>

#include <cstdlib>
#include <memory>

namespace gearrun::runner {
namespace {

using SteadyClock = std::chrono::steady_clock;
// run_tasks returns at least this often, so deadlines are kept.
constexpr int kSliceMs = 500;

struct ClientFree {
  void operator()(gearman_client_st* c) const { gearman_client_free(c); }
};
using ClientPtr = std::unique_ptr<gearman_client_st, ClientFree>;

// What one foreground task saw; the task's context.
struct TaskState {
  RequestObserver* observer = nullptr;
  std::optional<GearmanClient::Result> result;
  std::string handle;
};

TaskState& StateOf(gearman_task_st* task) {
  return *static_cast<TaskState*>(gearman_task_context(task));
}

std::string TaskData(gearman_task_st* task) {
  const void* data = gearman_task_data(task);
  return data == nullptr
             ? std::string()
             : std::string(static_cast<const char*>(data), gearman_task_data_size(task));
}

std::string ErrorText(gearman_client_st* client, gearman_return_t rc) {
  std::string text = gearman_strerror(rc);
  const char* detail = client != nullptr ? gearman_client_error(client) : nullptr;
  // libgearman's detail carries a source location ("... -> libgearman/add.cc:194"): cut it.
  if (detail != nullptr && *detail != '\0') {
    std::string d = detail;
    if (auto arrow = d.find(" -> "); arrow != std::string::npos) d.resize(arrow);
    text += ": " + d;
  }
  return text;
}

std::string ServerList(const std::vector<ServerAddress>& servers) {
  std::string out;
  for (const auto& s : servers) out += (out.empty() ? "" : ", ") + s.ToString();
  return out;
}

tl::expected<ClientPtr, std::string> Open(const std::vector<ServerAddress>& servers) {
  ClientPtr client(gearman_client_create(nullptr));
  if (!client) return tl::unexpected(std::string("cannot create a Gearman client"));
  // gearman_client_create added the servers of GEARMAN_SERVERS: only ours count.
  gearman_client_remove_servers(client.get());
  for (const auto& s : servers) {
    gearman_return_t rc =
        gearman_client_add_server(client.get(), s.host.c_str(), static_cast<in_port_t>(s.port));
    if (gearman_failed(rc)) {
      return tl::unexpected(s.ToString() + ": " + ErrorText(client.get(), rc));
    }
  }
  gearman_client_set_timeout(
      client.get(), static_cast<int>(std::chrono::milliseconds(kServerAnswerTimeout).count()));
  return client;
}

std::string Unreachable(const std::vector<ServerAddress>& servers, const std::string& why) {
  return "no Gearman server answered (" + ServerList(servers) + "): " + why;
}

gearman_return_t OnCreated(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  const char* handle = gearman_task_job_handle(task);
  s.handle = handle != nullptr ? handle : "";
  if (s.observer != nullptr) s.observer->Created(s.handle);
  return GEARMAN_SUCCESS;
}
gearman_return_t OnData(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  if (s.observer != nullptr) s.observer->Data(TaskData(task));
  return GEARMAN_SUCCESS;
}
gearman_return_t OnStatus(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  if (s.observer != nullptr) {
    s.observer->Status(gearman_task_numerator(task), gearman_task_denominator(task));
  }
  return GEARMAN_SUCCESS;
}
gearman_return_t OnComplete(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  s.result = GearmanClient::Result{
      .reply = GearmanClient::Reply::kComplete, .data = TaskData(task), .handle = s.handle};
  return GEARMAN_SUCCESS;
}
gearman_return_t OnException(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  std::string text = TaskData(task);
  if (gearman_task_has_exception(task)) {
    gearman_string_t e = gearman_task_exception(task);
    text.assign(e.c_str, e.size);
  }
  s.result = GearmanClient::Result{
      .reply = GearmanClient::Reply::kException, .data = std::move(text), .handle = s.handle};
  return GEARMAN_SUCCESS;
}
gearman_return_t OnFail(gearman_task_st* task) {
  TaskState& s = StateOf(task);
  // An exception already ended it (gearmand forwards only one of them; geard both).
  if (!s.result) {
    s.result = GearmanClient::Result{.reply = GearmanClient::Reply::kFail, .handle = s.handle};
  }
  return GEARMAN_SUCCESS;
}

}  // namespace

tl::expected<GearmanClient::Result, std::string> GearmanClient::Submit(
    const std::vector<ServerAddress>& servers, const Request& request, RequestObserver* observer) {
  auto client = Open(servers);
  if (!client) return tl::unexpected(client.error());
  gearman_client_st* c = client->get();
  // OPTION_REQ "exceptions": a round trip that also proves a server answers.
  gearman_client_add_options(c, GEARMAN_CLIENT_EXCEPTION);
  if (!gearman_client_has_option(c, GEARMAN_CLIENT_EXCEPTION)) {
    return tl::unexpected(Unreachable(servers, ErrorText(c, gearman_client_error_code(c))));
  }
  gearman_client_set_created_fn(c, OnCreated);
  gearman_client_set_data_fn(c, OnData);
  gearman_client_set_status_fn(c, OnStatus);
  gearman_client_set_complete_fn(c, OnComplete);
  gearman_client_set_exception_fn(c, OnException);
  gearman_client_set_fail_fn(c, OnFail);

  TaskState state{.observer = observer, .result = std::nullopt, .handle = ""};
  gearman_return_t rc = GEARMAN_SUCCESS;
  const char* unique = request.unique.empty() ? nullptr : request.unique.c_str();
  auto add = request.priority == Priority::kHigh  ? gearman_client_add_task_high
             : request.priority == Priority::kLow ? gearman_client_add_task_low
                                                  : gearman_client_add_task;
  gearman_task_st* task = add(c, nullptr, &state, request.function.c_str(), unique,
                              request.workload.data(), request.workload.size(), &rc);
  if (task == nullptr || gearman_failed(rc)) {
    return tl::unexpected("the request was refused: " + ErrorText(c, rc));
  }

  gearman_client_set_timeout(c, kSliceMs);
  std::optional<SteadyClock::time_point> deadline;
  if (request.timeout) deadline = SteadyClock::now() + *request.timeout;
  for (;;) {
    rc = gearman_client_run_tasks(c);
    if (state.result) return *state.result;
    if (rc == GEARMAN_SUCCESS) {
      return tl::unexpected(std::string("the server ended the request without a result"));
    }
    if (rc == GEARMAN_TIMEOUT || rc == GEARMAN_IO_WAIT || rc == GEARMAN_PAUSE) {
      if (deadline && SteadyClock::now() >= *deadline) {
        return tl::unexpected(
            "no result within the timeout" +
            (state.handle.empty() ? std::string() : " (job handle " + state.handle + ")"));
      }
      continue;
    }
    if (state.handle.empty()) return tl::unexpected(Unreachable(servers, ErrorText(c, rc)));
    return tl::unexpected("lost the server while waiting for " + state.handle + ": " +
                          ErrorText(c, rc));
  }
}

tl::expected<std::string, std::string> GearmanClient::SubmitBackground(
    const std::vector<ServerAddress>& servers, const Request& request) {
  auto client = Open(servers);
  if (!client) return tl::unexpected(client.error());
  gearman_client_st* c = client->get();
  gearman_job_handle_t handle{};
  const char* unique = request.unique.empty() ? nullptr : request.unique.c_str();
  auto submit = request.priority == Priority::kHigh  ? gearman_client_do_high_background
                : request.priority == Priority::kLow ? gearman_client_do_low_background
                                                     : gearman_client_do_background;
  gearman_return_t rc = submit(c, request.function.c_str(), unique, request.workload.data(),
                               request.workload.size(), handle);
  if (gearman_failed(rc)) {
    if (rc == GEARMAN_COULD_NOT_CONNECT || rc == GEARMAN_TIMEOUT || rc == GEARMAN_LOST_CONNECTION) {
      return tl::unexpected(Unreachable(servers, ErrorText(c, rc)));
    }
    return tl::unexpected("the request was refused: " + ErrorText(c, rc));
  }
  return std::string(handle);
}

}  // namespace gearrun::runner
