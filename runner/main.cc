// gearrun's entry point: the only place that configures logging and the only catch-all.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <iostream>

#include "runner/cli.h"

int main(int argc, char** argv) {
  // A reader that goes away (`gearrun run | head`) must not kill gearrun mid-build: writes
  // then fail with EPIPE instead. Steps get SIGPIPE back at its default (sandbox/spawn.h).
  ::signal(SIGPIPE, SIG_IGN);
  try {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    return gearrun::runner::RunCli(argc, argv, std::cout, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "gearrun: internal error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "gearrun: internal error\n";
  }
  return 70;  // EX_SOFTWARE: a crash is a bug; say so rather than pretend a build failed
}
