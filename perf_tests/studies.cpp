#include "studies.hpp"

#include <stdexcept>

namespace hfisher_perf {

const std::vector<Study>& studies() {
  static const std::vector<Study> all = {kernels_study(), hodlr_study(),     hss_study(),   fisher_study(),
                                         scaling_study(), kfac_bert_study(), layers_study()};
  return all;
}

const Study& study(const std::string& name) {
  for (const auto& s : studies())
    if (s.name == name) return s;
  throw std::invalid_argument("hfisher-bench: no study named " + name);
}

}  // namespace hfisher_perf
