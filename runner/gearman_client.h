// GearmanClient: submitting requests to Gearman servers, for the client commands
// (`gearrun submit`, `stop`, `describe`). The only user of libgearman's client API in
// runner/; no libgearman type leaves gearman_client.cc.
//
//   GearmanClient::Request request{.function = "build:hello", .workload = R"({"WHO":"x"})"};
//   auto result = GearmanClient::Submit(servers, request, &observer);
//   if (!result) Print(result.error());                 // no server, refused, timed out
//   else if (result->kind == Reply::kComplete) Print(result->data);
//
// Requests ask for the exceptions option, so a WORK_EXCEPTION's reason reaches the caller
// (gearmand 1.1.20 leaves clients without it waiting: docs/zuul.md). Servers from
// GEARMAN_SERVERS are never added: the caller says which servers to use.
// Thread safety: every call makes and frees its own libgearman client; calls may run
// concurrently.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "runner/config.h"

namespace gearrun::runner {

enum class Priority { kHigh, kNormal, kLow };

// Told about a foreground request as its packets arrive (on the caller's thread).
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void Created(const std::string& handle) = 0;
  virtual void Data(const std::string& data) = 0;
  virtual void Status(std::uint32_t numerator, std::uint32_t denominator) = 0;
};

class GearmanClient {
 public:
  struct Request {
    std::string function;
    std::string workload;
    std::string unique;  // empty: libgearman makes one up
    Priority priority = Priority::kNormal;
    // How long to wait for the end of a foreground request; nullopt: as long as it takes
    // (a server that goes away still ends the wait with an error).
    std::optional<std::chrono::milliseconds> timeout;
  };

  enum class Reply { kComplete, kFail, kException };
  struct Result {
    Reply reply = Reply::kComplete;
    std::string data;    // WORK_COMPLETE's payload, or the exception's text
    std::string handle;  // the job handle the server gave
  };

  // Sends a foreground request and waits for its end. Errors: no server could be reached
  // (each server's reason), the server refused the request, the timeout passed.
  [[nodiscard]] static tl::expected<Result, std::string> Submit(
      const std::vector<ServerAddress>& servers, const Request& request, RequestObserver* observer);

  // Queues a background request; returns its job handle.
  [[nodiscard]] static tl::expected<std::string, std::string> SubmitBackground(
      const std::vector<ServerAddress>& servers, const Request& request);
};

// How long to wait for a server to accept a connection and answer a setup round trip.
inline constexpr std::chrono::seconds kServerAnswerTimeout{10};

}  // namespace gearrun::runner
