// trainer/bridge.cpp - LibTorch <-> libckpt (see bridge.hpp).
#include "bridge.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <mutex>

#include "ckpt/error.hpp"

namespace ckpt::train {
namespace {

ckpt::DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::float32;
    case at::kDouble: return DType::float64;
    case at::kHalf: return DType::float16;
    case at::kBFloat16: return DType::bfloat16;
    case at::kLong: return DType::int64;
    case at::kInt: return DType::int32;
    case at::kShort: return DType::int16;
    case at::kChar: return DType::int8;
    case at::kByte: return DType::uint8;
    case at::kBool: return DType::bool_;
    default: throw Error(ErrorCode::invalid_argument, std::string("cannot export a tensor of dtype ") + at::toString(t));
  }
}

at::ScalarType to_scalar_type(ckpt::DType t, const std::string& key) {
  switch (t) {
    case DType::float32: return at::kFloat;
    case DType::float64: return at::kDouble;
    case DType::float16: return at::kHalf;
    case DType::bfloat16: return at::kBFloat16;
    case DType::int64: return at::kLong;
    case DType::int32: return at::kInt;
    case DType::int16: return at::kShort;
    case DType::int8: return at::kChar;
    case DType::uint8: return at::kByte;
    case DType::bool_: return at::kBool;
    default:
      throw Error(ErrorCode::unsupported_tensor,
                  "dtype " + std::string(dtype_name(t)) + " has no LibTorch 1.13 equivalent", {}, {}, Error::no_offset, key);
  }
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const Value& need(const Value& d, std::string_view key, const char* what) {
  const Value* v = d.get(key);
  if (!v) throw Error(ErrorCode::key_not_found, std::string(what) + " has no '" + std::string(key) + "'");
  return *v;
}

double number(const Value& v) { return v.as_float(); }

Value* float_list(Document& doc, const std::vector<double>& xs) {
  Value* l = doc.list();
  for (double x : xs) l->append(doc.floating(x));
  return l;
}

std::vector<double> read_float_list(const Value& v) {
  std::vector<double> out;
  for (const Value* e : v.elements()) out.push_back(e->as_float());
  return out;
}

}  // namespace

Value* TensorExporter::tensor(const at::Tensor& t) {
  at::Tensor c = t.detach();
  if (!c.device().is_cpu()) c = c.cpu();
  const at::Storage& st = c.storage();
  const void* key = st.unsafeGetStorageImpl();
  auto it = storages_.find(key);
  if (it == storages_.end()) {
    auto keep = std::make_shared<at::Tensor>(c);
    auto s = ckpt::Storage::from_external(to_dtype(c.scalar_type()), st.data(), st.nbytes(),
                                          std::shared_ptr<const void>(keep, keep.get()));
    it = storages_.emplace(key, std::move(s)).first;
  }
  ckpt::Tensor out;
  out.dtype = to_dtype(c.scalar_type());
  out.shape.assign(c.sizes().begin(), c.sizes().end());
  out.stride.assign(c.strides().begin(), c.strides().end());
  out.storage_offset = c.storage_offset();
  out.storage = it->second;
  return doc_.tensor(std::move(out));
}

at::Tensor to_torch(const ckpt::Tensor& t) {
  at::Tensor out = at::empty(std::vector<int64_t>(t.shape.begin(), t.shape.end()), to_scalar_type(t.dtype, ""));
  if (t.numel() > 0) t.copy_to(out.data_ptr());
  return out;
}

void copy_into(const at::Tensor& dst, const ckpt::Tensor& src, const std::string& key) {
  std::vector<int64_t> dshape(dst.sizes().begin(), dst.sizes().end());
  if (dshape != src.shape)
    throw Error(ErrorCode::invalid_argument,
                "shape " + shape_text(src.shape) + " in the checkpoint, the model has " + shape_text(dshape), {}, {},
                Error::no_offset, key);
  at::NoGradGuard no_grad;
  const at::ScalarType st = to_scalar_type(src.dtype, key);
  if (st == dst.scalar_type() && dst.is_contiguous()) {
    if (src.numel() > 0) src.copy_to(dst.data_ptr());
    return;
  }
  const bool both_float = at::isFloatingType(st) && at::isFloatingType(dst.scalar_type());
  const bool both_int = at::isIntegralType(st, true) && at::isIntegralType(dst.scalar_type(), true);
  if (!both_float && !both_int)
    throw Error(ErrorCode::invalid_argument,
                std::string("dtype ") + std::string(dtype_name(src.dtype)) + " in the checkpoint, the model has " +
                    at::toString(dst.scalar_type()), {}, {}, Error::no_offset, key);
  dst.copy_(to_torch(src));
}

Value* state_dict_value(TensorExporter& ex, const std::vector<NamedTensor>& state, const std::string& prefix) {
  Value* sd = ex.document().ordered_dict();
  for (const NamedTensor& nt : state) sd->set(prefix + nt.name, ex.tensor(nt.tensor));
  return sd;
}

Value* optimizer_value(TensorExporter& ex, const Optimizer& opt) {
  Document& doc = ex.document();
  const bool sgd = opt.kind == "sgd";
  Value* state = doc.dict();
  for (size_t i = 0; i < opt.params.size(); ++i) {
    if (!opt.has_state[i]) continue;
    Value* s = doc.dict();
    if (sgd) {
      s->set("momentum_buffer", opt.momentum_buffer[i].defined() ? ex.tensor(opt.momentum_buffer[i]) : doc.none());
    } else {
      s->set("step", ex.tensor(opt.step_count[i]));
      s->set("exp_avg", ex.tensor(opt.exp_avg[i]));
      s->set("exp_avg_sq", ex.tensor(opt.exp_avg_sq[i]));
    }
    state->set(doc.integer(static_cast<int64_t>(i)), s);
  }
  // Key order and Python kinds of torch 1.13's defaults dicts, with Mammoth's
  // arguments (momentum/weight_decay floats, nesterov the int flag).
  Value* g = doc.dict();
  g->set("lr", opt.lr);
  if (sgd) {
    g->set("momentum", opt.momentum);
    g->set("dampening", static_cast<int64_t>(opt.dampening));
    g->set("weight_decay", opt.weight_decay);
    g->set("nesterov", static_cast<int64_t>(opt.nesterov));
    g->set("maximize", false);
    g->set("foreach", doc.none());
    g->set("differentiable", false);
  } else {
    g->set("betas", doc.tuple({doc.floating(opt.beta1), doc.floating(opt.beta2)}));
    g->set("eps", opt.eps);
    g->set("weight_decay", opt.weight_decay);
    g->set("amsgrad", false);
    g->set("maximize", false);
    g->set("foreach", doc.none());
    g->set("capturable", false);
    g->set("differentiable", false);
    g->set("fused", false);
  }
  if (opt.initial_lr >= 0) g->set("initial_lr", opt.initial_lr);
  Value* params = doc.list();
  for (size_t i = 0; i < opt.params.size(); ++i) params->append(doc.integer(static_cast<int64_t>(i)));
  g->set("params", params);
  Value* root = doc.dict();
  root->set("state", state);
  root->set("param_groups", doc.list({g}));
  return root;
}

void load_optimizer(Optimizer& opt, const Value& v) {
  const Value& groups = need(v, "param_groups", "optimizer state");
  if (groups.size() != 1) throw Error(ErrorCode::invalid_argument, "optimizer state has " + std::to_string(groups.size()) + " param groups, expected 1");
  const Value& g = groups.at(0);
  const bool file_sgd = g.get("momentum") != nullptr;
  if (file_sgd != (opt.kind == "sgd"))
    throw Error(ErrorCode::invalid_argument, std::string("the checkpoint holds ") + (file_sgd ? "an SGD" : "an Adam") +
                                                 " optimizer state, the run uses --optimizer " + opt.kind);
  if (need(g, "params", "param group").size() != opt.params.size())
    throw Error(ErrorCode::invalid_argument, "optimizer state has " + std::to_string(g.at("params").size()) +
                                                 " parameters, the model " + std::to_string(opt.params.size()));
  opt.lr = number(need(g, "lr", "param group"));
  if (const Value* il = g.get("initial_lr")) opt.initial_lr = number(*il);
  const size_t n = opt.params.size();
  opt.has_state.assign(n, 0);
  opt.momentum_buffer.assign(n, at::Tensor());
  opt.step_count.assign(n, at::Tensor());
  opt.exp_avg.assign(n, at::Tensor());
  opt.exp_avg_sq.assign(n, at::Tensor());
  for (const auto& [k, s] : need(v, "state", "optimizer state").items()) {
    const int64_t i = k->as_int();
    if (i < 0 || static_cast<size_t>(i) >= n) throw Error(ErrorCode::invalid_argument, "optimizer state index " + std::to_string(i) + " out of range");
    const std::string key = "optimizer/state/" + std::to_string(i);
    auto load = [&](const char* name, at::Tensor& dst) {
      const Value& t = need(*s, name, "optimizer state entry");
      if (t.is_none()) return;
      dst = to_torch(t.tensor());
      if (dst.sizes() != opt.params[i].sizes() && std::string(name) != "step")
        throw Error(ErrorCode::invalid_argument, std::string(name) + " shape does not match the parameter", {}, {}, Error::no_offset, key);
    };
    if (opt.kind == "sgd") {
      load("momentum_buffer", opt.momentum_buffer[i]);
    } else {
      load("step", opt.step_count[i]);
      load("exp_avg", opt.exp_avg[i]);
      load("exp_avg_sq", opt.exp_avg_sq[i]);
    }
    opt.has_state[i] = 1;
  }
}

Value* scheduler_value(Document& doc, const Scheduler* s) {
  if (!s) return doc.none();
  Value* d = doc.dict();
  if (s->kind == "multisteplr") {
    Value* counter = doc.dict();
    counter->set_type_name("collections.Counter");
    for (auto& [epoch, count] : s->milestones) counter->set(doc.integer(epoch), doc.integer(count));
    d->set("milestones", counter);
    d->set("gamma", s->gamma);
  } else {
    d->set("T_max", s->t_max);
    if (s->eta_min == static_cast<double>(static_cast<int64_t>(s->eta_min)))
      d->set("eta_min", static_cast<int64_t>(s->eta_min));  // Python's default is the int 0
    else
      d->set("eta_min", s->eta_min);
  }
  d->set("base_lrs", float_list(doc, s->base_lrs));
  d->set("last_epoch", s->last_epoch);
  d->set("verbose", false);
  d->set("_step_count", s->step_count);
  d->set("_get_lr_called_within_step", false);
  d->set("_last_lr", float_list(doc, s->last_lr));
  return d;
}

Scheduler load_scheduler(const Value& v) {
  Scheduler s;
  if (const Value* m = v.get("milestones")) {
    s.kind = "multisteplr";
    for (const auto& [k, c] : m->items()) s.milestones.emplace_back(k->as_int(), c->as_int());
    s.gamma = number(need(v, "gamma", "scheduler state"));
  } else if (const Value* t = v.get("T_max")) {
    s.kind = "cosine";
    s.t_max = t->as_int();
    s.eta_min = number(need(v, "eta_min", "scheduler state"));
  } else {
    throw Error(ErrorCode::invalid_argument, "scheduler state is neither MultiStepLR nor CosineAnnealingLR");
  }
  s.base_lrs = read_float_list(need(v, "base_lrs", "scheduler state"));
  s.last_epoch = need(v, "last_epoch", "scheduler state").as_int();
  s.step_count = need(v, "_step_count", "scheduler state").as_int();
  s.last_lr = read_float_list(need(v, "_last_lr", "scheduler state"));
  return s;
}

Value* generator_value(TensorExporter& ex, at::Generator gen) {
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  return ex.tensor(state);
}

void load_generator(at::Generator& gen, const Value& v, const std::string& key) {
  if (!v.is(Kind::tensor)) throw Error(ErrorCode::type_error, "a generator state must be a uint8 tensor", {}, {}, Error::no_offset, key);
  at::Tensor t = to_torch(v.tensor());
  if (t.scalar_type() != at::kByte) throw Error(ErrorCode::type_error, "a generator state must be a uint8 tensor", {}, {}, Error::no_offset, key);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(t);
}

}  // namespace ckpt::train
