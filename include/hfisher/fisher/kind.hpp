#pragma once
/// \file kind.hpp
/// \brief FisherKind (which curvature matrix is estimated) and its names:
/// one table for the library, the drivers and the benchmarks' command lines.
/// Free of Kokkos, so command-line code can include it cheaply.

#include <hfisher/core/error.hpp>

#include <string>
#include <vector>

namespace hfisher {

/// Which curvature matrix is estimated.
enum class FisherKind {
  Empirical,   ///< gradients of -log p(y | x) at the data labels
  MonteCarlo,  ///< labels sampled from the model's p(y | x), n samples per example
  GGN          ///< exact generalized Gauss-Newton of softmax cross-entropy: J^T (diag p - p p^T) J
};

/// The names of the Fisher kinds that drivers and benchmarks accept
/// (--kind, --fisher-kind): one table, read by fisher_kind_from_string and
/// by the command-line checks.
struct FisherKindName {
  FisherKind value;
  const char* name;
};
inline constexpr FisherKindName fisher_kind_names[] = {
    {FisherKind::Empirical, "empirical"}, {FisherKind::MonteCarlo, "mc"}, {FisherKind::GGN, "ggn"}};

/// The names of fisher_kind_names, in order (for a command line's list of
/// allowed values).
inline std::vector<std::string> fisher_kind_name_list() {
  std::vector<std::string> names;
  for (const auto& r : fisher_kind_names) names.push_back(r.name);
  return names;
}

/// The FisherKind named `name` (a name of fisher_kind_names, or
/// "monte-carlo", what to_string prints for MonteCarlo). Throws Error naming
/// the known names.
inline FisherKind fisher_kind_from_string(const std::string& name,
                                          const char* where = "hfisher::fisher_kind_from_string") {
  for (const auto& r : fisher_kind_names)
    if (name == r.name) return r.value;
  if (name == "monte-carlo") return FisherKind::MonteCarlo;
  std::string known;
  for (const auto& r : fisher_kind_names) known += std::string(known.empty() ? "" : ", ") + r.name;
  throw Error(hfisher::detail::concat(where, ": unknown Fisher kind '", name, "' (known: ", known, ")"));
}

inline const char* to_string(FisherKind k) {
  switch (k) {
    case FisherKind::Empirical:
      return "empirical";
    case FisherKind::MonteCarlo:
      return "monte-carlo";
    case FisherKind::GGN:
      return "ggn";
  }
  return "?";
}

}  // namespace hfisher
