// The daemon log of `gearrun serve` (spdlog): where it goes and how it looks. Called once,
// by the command that owns the process, before any other thread starts; libraries only log.
//
// Text: "2026-11-23T10:15:02.123Z info build started [job: guava, number: 7, ...]".
// JSON: one object per line: {"time": ..., "level": ..., "message": ...}.
// Both go to standard error (the journal, under systemd).
#pragma once

#include <string>

#include "runner/config.h"

namespace gearrun::runner {

// `level`: trace, debug, info, warn, error (already validated by LoadServeConfig).
void ConfigureLogging(const std::string& level, LogFormat format);

}  // namespace gearrun::runner
