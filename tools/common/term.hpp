// tools/common/term.hpp - terminal output: colour policy, sizes, escaping, tables, progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt::tools {

/// Colour only on a TTY, never under NO_COLOR (any value) or TERM=dumb.
/// CKPT_FORCE_COLOR=1 forces it (golden tests of the coloured view).
bool want_color(std::FILE* stream);

class Style {
 public:
  explicit Style(bool color = false) : color_(color) {}
  bool color() const noexcept { return color_; }
  std::string bold(std::string_view s) const { return wrap("1", s); }
  std::string dim(std::string_view s) const { return wrap("2", s); }
  std::string red(std::string_view s) const { return wrap("31", s); }
  std::string green(std::string_view s) const { return wrap("32", s); }
  std::string yellow(std::string_view s) const { return wrap("33", s); }
  std::string blue(std::string_view s) const { return wrap("34", s); }
  std::string cyan(std::string_view s) const { return wrap("36", s); }
  std::string wrap(std::string_view sgr, std::string_view s) const;

 private:
  bool color_;
};

/// 1536 -> "1.5 KiB", 97'500'000 -> "93.0 MiB", 12 -> "12 B".
std::string human_bytes(uint64_t n);
/// 11173962 -> "11.2M", 89610 -> "89.6K", 512 -> "512".
std::string human_count(uint64_t n);
/// 11173962 -> "11,173,962".
std::string grouped(uint64_t n);
/// A shape as "[64, 3, 3, 3]" ("[]" for a 0-d tensor).
std::string shape_str(const std::vector<int64_t>& shape);
/// A double in the shortest form that reads back exactly ("0.1", "1e-08", "nan", "inf").
std::string format_double(double v);
/// A double for tables: 4 significant digits ("0.001234", "1.235e+06").
std::string format_short(double v);

/// Escapes control characters (and invalid UTF-8 bytes) for display:
/// "\n" -> "\\n", "\x1b" -> "\\x1b". Printable UTF-8 passes unchanged.
std::string escape(std::string_view s);

/// Display width of UTF-8 text that escape() produced (code points; SGR
/// sequences from Style are not counted).
size_t display_width(std::string_view s);

/// A plain-text table with aligned columns. Cells may hold Style SGR codes.
class Table {
 public:
  enum class Align { left, right };
  explicit Table(std::vector<std::string> header, std::vector<Align> align = {});
  void add(std::vector<std::string> row);
  size_t rows() const noexcept { return rows_.size(); }
  /// Renders with `indent` spaces before each line, two spaces between columns.
  std::string render(const Style& style, size_t indent = 2) const;

 private:
  std::vector<std::string> header_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

/// A progress bar on stderr, drawn only when stderr is a TTY (and not under
/// CKPT_NO_PROGRESS); redrawn at most 10 times a second.
class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes);
  ~Progress();
  void advance(uint64_t bytes);
  void finish();

 private:
  void draw(bool final);
  std::string label_;
  uint64_t total_, done_ = 0;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace ckpt::tools
