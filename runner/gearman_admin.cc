#include "runner/gearman_admin.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "sandbox/unique_fd.h"

namespace gearrun::runner {
namespace {

using SteadyClock = std::chrono::steady_clock;

int MillisLeft(SteadyClock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

tl::expected<sandbox::UniqueFd, std::string> ConnectWithin(const ServerAddress& server,
                                                           std::chrono::milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(server.port);
  if (int rc = ::getaddrinfo(server.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return tl::unexpected(std::string("cannot resolve ") + server.host + ": " + ::gai_strerror(rc));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    sandbox::UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) continue;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error = std::strerror(errno);
      continue;
    }
    pollfd p{.fd = fd.get(), .events = POLLOUT, .revents = 0};
    int n = ::poll(&p, 1, MillisLeft(deadline));
    int err = 0;
    socklen_t len = sizeof(err);
    if (n <= 0) {
      error = "no answer in time";
      continue;
    }
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      error = std::strerror(err);
      continue;
    }
    ::freeaddrinfo(found);
    return fd;
  }
  ::freeaddrinfo(found);
  return tl::unexpected(error);
}

namespace {

enum class Reply { kLine, kListing };  // one line, or lines up to "."

// Sends `command` and returns the answer's lines (without the final "." of a listing).
tl::expected<std::vector<std::string>, std::string> Exchange(const ServerAddress& server,
                                                             std::string command, Reply reply,
                                                             std::chrono::milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  auto fail = [&](const std::string& what) {
    return tl::unexpected(server.ToString() + ": " + what);
  };
  auto fd = ConnectWithin(server, timeout);
  if (!fd) return fail(fd.error());
  command += "\n";
  std::string_view out = command;
  while (!out.empty()) {
    pollfd p{.fd = fd->get(), .events = POLLOUT, .revents = 0};
    if (::poll(&p, 1, MillisLeft(deadline)) <= 0) return fail("no answer in time");
    ssize_t n = ::send(fd->get(), out.data(), out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR && errno != EAGAIN) return fail(std::strerror(errno));
    if (n > 0) out.remove_prefix(static_cast<std::size_t>(n));
  }
  std::string in;
  std::vector<std::string> lines;
  for (;;) {
    std::size_t eol;
    while ((eol = in.find('\n')) != std::string::npos) {
      std::string line = in.substr(0, eol);
      in.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (reply == Reply::kListing && line == ".") return lines;
      if (line.rfind("ERR ", 0) == 0) return fail("the server answered: " + line);
      lines.push_back(std::move(line));
      if (reply == Reply::kLine) return lines;
    }
    pollfd p{.fd = fd->get(), .events = POLLIN, .revents = 0};
    int ready = ::poll(&p, 1, MillisLeft(deadline));
    if (ready == 0) {
      return fail("no answer within " + std::to_string(timeout.count()) + " ms");
    }
    if (ready < 0 && errno == EINTR) continue;
    char buf[4096];
    ssize_t n = ::recv(fd->get(), buf, sizeof(buf), 0);
    if (n == 0) return fail("the server closed the connection");
    if (n < 0 && errno != EINTR && errno != EAGAIN) return fail(std::strerror(errno));
    if (n > 0) in.append(buf, static_cast<std::size_t>(n));
  }
}

std::vector<std::string> Split(std::string_view text, char separator) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    auto at = text.find(separator, start);
    std::string_view word =
        text.substr(start, at == std::string_view::npos ? text.npos : at - start);
    if (!word.empty()) out.emplace_back(word);
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

bool ToInt(std::string_view text, int& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

tl::expected<std::vector<FunctionStatus>, std::string> AdminStatus(
    const ServerAddress& server, std::chrono::milliseconds timeout) {
  auto lines = Exchange(server, "status", Reply::kListing, timeout);
  if (!lines) return tl::unexpected(lines.error());
  std::vector<FunctionStatus> out;
  for (const auto& line : *lines) {
    auto fields = Split(line, '\t');
    FunctionStatus s;
    if (fields.size() != 4 || !ToInt(fields[1], s.queued) || !ToInt(fields[2], s.running) ||
        !ToInt(fields[3], s.workers)) {
      return tl::unexpected(server.ToString() + ": unexpected status line '" + line + "'");
    }
    s.function = fields[0];
    out.push_back(std::move(s));
  }
  return out;
}

tl::expected<std::vector<WorkerConnection>, std::string> AdminWorkers(
    const ServerAddress& server, std::chrono::milliseconds timeout) {
  auto lines = Exchange(server, "workers", Reply::kListing, timeout);
  if (!lines) return tl::unexpected(lines.error());
  std::vector<WorkerConnection> out;
  for (const auto& line : *lines) {
    // "<fd> <ip> <client id> : <function> <function> ..."; function names hold no spaces,
    // so the last " :" ends the client id (which SET_CLIENT_ID does not keep free of them).
    auto ip = line.find(' ');
    auto id = ip == std::string::npos ? ip : line.find(' ', ip + 1);
    auto colon = line.rfind(" :");
    if (id == std::string::npos || colon == std::string::npos || colon < id) {
      return tl::unexpected(server.ToString() + ": unexpected workers line '" + line + "'");
    }
    out.push_back({.address = line.substr(ip + 1, id - ip - 1),
                   .client_id = line.substr(id + 1, colon - id - 1),
                   .functions = Split(std::string_view(line).substr(colon + 2), ' ')});
  }
  return out;
}

tl::expected<void, std::string> AdminCancel(const ServerAddress& server, std::string_view handle,
                                            std::chrono::milliseconds timeout) {
  auto lines = Exchange(server, "cancel job " + std::string(handle), Reply::kLine, timeout);
  if (!lines) return tl::unexpected(lines.error());
  if (lines->empty() || lines->front() != "OK") {
    return tl::unexpected(server.ToString() + ": the server answered '" +
                          (lines->empty() ? "" : lines->front()) + "'");
  }
  return {};
}

}  // namespace gearrun::runner
