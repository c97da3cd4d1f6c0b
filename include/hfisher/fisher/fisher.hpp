#pragma once
/// \file fisher.hpp
/// \brief Everything of the curvature layer: the CurvatureOperator interface,
/// its structures, load, and estimate_fisher.
#include <hfisher/fisher/block_diagonal.hpp>
#include <hfisher/fisher/curvature.hpp>
#include <hfisher/fisher/dense.hpp>
#include <hfisher/fisher/diagonal.hpp>
#include <hfisher/fisher/estimate.hpp>
#include <hfisher/fisher/hierarchical.hpp>
#include <hfisher/fisher/io.hpp>
#include <hfisher/fisher/lowrank.hpp>
#include <hfisher/fisher/products.hpp>
#include <hfisher/fisher/kfac.hpp>
