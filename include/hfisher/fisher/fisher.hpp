#pragma once
/// \file fisher.hpp
/// \brief Everything of the curvature layer: the CurvatureOperator algebra,
/// its sums, preparation and files, its structures, and estimate_fisher.
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/dense.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/estimate.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/io.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/prepare.hpp>
#include <hfisher/fisher/products.hpp>
#include <hfisher/fisher/storage.hpp>
#include <hfisher/fisher/sums.hpp>
#include <hfisher/fisher/kfac.hpp>
