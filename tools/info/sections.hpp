// tools/info/sections.hpp - reading the parts of a training checkpoint:
// optimizer, scheduler, Mammoth results and replay buffer.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "info/report.hpp"

namespace ckpt::info {

/// The optimizer's kind from its param-group and state keys, its groups and
/// per-parameter state; `model` (optional) names the parameters.
OptimizerInfo analyze_optimizer(const Value& opt, const TensorTable* model);

/// "MultiStepLR", "CosineAnnealingLR", ... from a scheduler's state_dict keys.
std::string scheduler_kind(const Value& sched);

/// Mammoth's [results, results_mask_classes, logger.dump()] (mammoth.md §1.6).
ResultsInfo analyze_results(const Value& results);

/// Mammoth's buffer: a dict of tensors (safe mode) or a pickled
/// utils.buffer.Buffer object (old_pickle mode).
BufferInfo analyze_buffer(const Value& buffer);
std::vector<std::pair<std::string, const Value*>> buffer_tensors(const Value& buffer);
/// Label histograms of labels / task_labels / true_labels (reads those payloads).
void read_histograms(BufferInfo& b);

}  // namespace ckpt::info
