// The daemon log of `gearrun serve` (spdlog): where it goes and how it looks. Called once,
// by the command that owns the process, before any other thread starts; libraries only log.
//
// Text: "2026-11-23T10:15:02.123Z info build started [job: guava, number: 7, ...]".
// JSON: one object per line: {"time": ..., "level": ..., "message": ...}.
// Both go to standard error (the journal, under systemd). Messages quote what came from
// outside (function names, handles, unique ids, URLs, reasons that hold parameter values),
// so every message is one line of text whatever it holds: control characters, backslashes
// and bytes that are not UTF-8 are escaped in text (EscapeForLog), and JSON escapes them
// by its own rules.
#pragma once

#include <string>
#include <string_view>

#include "runner/config.h"

namespace gearrun::runner {

// `level`: trace, debug, info, warn, error (already validated by LoadServeConfig).
void ConfigureLogging(const std::string& level, LogFormat format);

// `text` as one line of printable text: \n, \r, \t and \\ as such, other control characters
// (C0, DEL, C1) and bytes that are not UTF-8 as \xNN; other UTF-8 is kept.
[[nodiscard]] std::string EscapeForLog(std::string_view text);

}  // namespace gearrun::runner
