#pragma once
/// \file method.hpp
/// \brief The continual-learning methods a run compares, as one enum: the
/// four Fisher penalties, plain fine-tuning and experience replay. Parsed
/// once from its command-line name; the names are also what results,
/// checkpoint keys and tables print, so they never change.

#include <hfisher/continual/penalty.hpp>
#include <hfisher/core/error.hpp>

#include <string>
#include <utility>
#include <vector>

namespace hfisher {
namespace continual {

enum class Method { Finetune, EWC, OnlineEWC, KFACLaplace, Hierarchical, Replay };

/// Every method with its name, in the order the help text lists them.
inline const std::vector<std::pair<std::string, Method>>& method_names() {
  static const std::vector<std::pair<std::string, Method>> names = {
      {"finetune", Method::Finetune},         {"ewc", Method::EWC},
      {"online-ewc", Method::OnlineEWC},      {"kfac-laplace", Method::KFACLaplace},
      {"hierarchical", Method::Hierarchical}, {"replay", Method::Replay}};
  return names;
}

/// The name of m (from method_names(), the one list of names).
inline const char* to_string(Method m) {
  for (const auto& [name, mm] : method_names())
    if (mm == m) return name.c_str();
  return "?";
}

/// The method named s; throws hfisher::Error listing the names otherwise.
inline Method parse_method(const std::string& s) {
  std::string all;
  for (const auto& [name, m] : method_names()) {
    if (name == s) return m;
    all += (all.empty() ? "" : ", ") + name;
  }
  throw Error("no method '" + s + "' among the continual-learning methods (" + all + ")");
}

/// Whether a method is a Fisher penalty (has a lambda); fine-tuning and
/// replay have none.
inline bool is_penalty(Method m) { return m != Method::Finetune && m != Method::Replay; }

/// The penalty a penalty method keeps; throws for fine-tuning and replay.
inline PenaltyMethod penalty_method(Method m) {
  switch (m) {
    case Method::EWC:
      return PenaltyMethod::EWC;
    case Method::OnlineEWC:
      return PenaltyMethod::OnlineEWC;
    case Method::KFACLaplace:
      return PenaltyMethod::KFACLaplace;
    case Method::Hierarchical:
      return PenaltyMethod::Hierarchical;
    default:
      break;
  }
  throw Error(std::string("continual method '") + to_string(m) + "' keeps no Fisher penalty");
}

}  // namespace continual
}  // namespace hfisher
