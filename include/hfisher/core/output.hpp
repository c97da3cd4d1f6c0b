#pragma once
/// \file output.hpp
/// \brief Output folders and plots of the drivers and benchmarks, without a
/// shell: a checked output directory and gnuplot run from an argument vector.
///
/// The gnuplot scripts the drivers write name their data and images by file
/// name only and are run with the output directory as the working directory,
/// so no path (and nothing a user typed) is ever part of a command line or of
/// a script; `cd <output> && gnuplot <script>.gp` redraws the plots, also
/// after the folder was moved.

#include <string>

namespace hfisher {
namespace io {

/// Checks an output directory before any computation: refuses an empty path
/// and the file-system root, creates the directory (and its parents) and
/// proves it writable by creating and removing a uniquely named file. Throws
/// hfisher::Error("<where>: ...") naming the path and the system's reason.
/// Returns the directory as given.
std::string prepare_output_dir(const std::string& dir, const char* where);

/// Runs `gnuplot <script>` with `dir` as the working directory (fork + exec
/// with an argument vector: no shell; stdout and stderr go to /dev/null).
/// Returns true when gnuplot exited with status 0, false when it failed or
/// is not installed.
bool run_gnuplot(const std::string& dir, const std::string& script);

/// `s` as a JSON string literal, quotes included: quote, backslash and
/// control characters escaped, so a path a user typed (a directory named
/// `a"b`) cannot break the results.json a driver writes.
std::string json_string(const std::string& s);

}  // namespace io
}  // namespace hfisher
