#include "common/json.hpp"

#include <cmath>
#include <cstring>

#include "common/term.hpp"

namespace ckpt::tools {

json json_number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json to_json(const Value& v, int max_depth) {
  if (max_depth <= 0) return "...";
  switch (v.kind()) {
    case Kind::none: return nullptr;
    case Kind::boolean: return v.as_bool();
    case Kind::integer: return v.as_int();
    case Kind::bigint: return v.bigint_text();
    case Kind::floating: return json_number(v.as_float());
    case Kind::complex: return json{{"real", json_number(v.real())}, {"imag", json_number(v.imag())}};
    case Kind::string: return escape(v.as_str()) == v.as_str() ? json(v.as_str()) : json(escape(v.as_str()));
    case Kind::bytes: return json{{"bytes", v.as_bytes().size()}};
    case Kind::list: case Kind::tuple: case Kind::set: case Kind::frozenset: {
      json a = json::array();
      for (const Value* e : v.elements()) a.push_back(to_json(*e, max_depth - 1));
      return a;
    }
    case Kind::dict: {
      json o = json::object();
      for (const auto& [k, val] : v.items())
        o[k->is(Kind::string) ? k->as_str() : repr(*k)] = to_json(*val, max_depth - 1);
      return o;
    }
    case Kind::tensor: {
      const Tensor& t = v.tensor();
      return json{{"tensor", {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}}}};
    }
    case Kind::torch_dtype: return "torch." + std::string(dtype_name(v.torch_dtype()));
    case Kind::device: return v.device();
    case Kind::np_dtype: return v.np_descr();
    case Kind::ndarray: {
      const NdArray& a = v.ndarray();
      if (a.is_scalar && a.data && a.data->is(Kind::bytes)) {
        const std::string& b = a.data->as_bytes();
        if (a.descr == "<f8" && b.size() == 8) {
          double d;
          std::memcpy(&d, b.data(), 8);
          return json_number(d);
        }
        if (a.descr == "<i8" && b.size() == 8) {
          int64_t i;
          std::memcpy(&i, b.data(), 8);
          return i;
        }
      }
      return json{{"ndarray", {{"descr", a.descr}, {"shape", a.shape}}}};
    }
    default:
      return json{{"object", v.qualified_name()}};
  }
}

}  // namespace ckpt::tools
