// XLA FFI handlers for 2-D f32 convolutions computed by oneDNN: the forward pass, the input
// gradient ("backward data") and the kernel gradient ("backward weights"), in JAX's layouts
// (x and y NHWC, the kernel HWIO). gen_jax/models/onednn.py builds this file, loads it and calls the
// handlers through jax.ffi; see there for why.
//
// Each handler takes the attributes `strides`, `padding_lo` and `padding_hi` (2 ints each,
// in pixels) and derives every size from its buffers. oneDNN's primitives for one set of
// shapes are created once and kept; they are safe to execute from several threads at once.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;

namespace {

const dnnl::engine& Engine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// The convolution's sizes: N, H, W, C (input), KH, KW, O, OH, OW, then strides and paddings.
using Key = std::tuple<std::vector<int64_t>, std::vector<int64_t>>;

struct Primitives {
  memory::desc x, w_user, y;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  dnnl::reorder w_to_fwd, w_to_bwd_data, dw_to_user;
};

std::shared_ptr<const Primitives> Make(const std::vector<int64_t>& d,
                                       const std::vector<int64_t>& conv) {
  const auto f32 = memory::data_type::f32;
  memory::dims strides = {conv[0], conv[1]}, lo = {conv[2], conv[3]}, hi = {conv[4], conv[5]};
  auto p = std::make_shared<Primitives>();
  p->x = memory::desc({d[0], d[3], d[1], d[2]}, f32, Tag::nhwc);
  p->w_user = memory::desc({d[6], d[3], d[4], d[5]}, f32, Tag::hwio);
  p->y = memory::desc({d[0], d[6], d[7], d[8]}, f32, Tag::nhwc);
  auto w_any = memory::desc({d[6], d[3], d[4], d[5]}, f32, Tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto alg = dnnl::algorithm::convolution_direct;
  const auto& eng = Engine();
  p->fwd_pd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, alg, p->x, w_any, p->y, strides, lo, hi, attr);
  p->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
      eng, alg, p->x, w_any, p->y, strides, lo, hi, p->fwd_pd, attr);
  p->bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      eng, alg, p->x, w_any, p->y, strides, lo, hi, p->fwd_pd, attr);
  p->fwd = dnnl::convolution_forward(p->fwd_pd);
  p->bwd_data = dnnl::convolution_backward_data(p->bwd_data_pd);
  p->bwd_weights = dnnl::convolution_backward_weights(p->bwd_weights_pd);
  p->w_to_fwd = dnnl::reorder(dnnl::reorder::primitive_desc(
      eng, p->w_user, eng, p->fwd_pd.weights_desc()));
  p->w_to_bwd_data = dnnl::reorder(dnnl::reorder::primitive_desc(
      eng, p->w_user, eng, p->bwd_data_pd.weights_desc()));
  p->dw_to_user = dnnl::reorder(dnnl::reorder::primitive_desc(
      eng, p->bwd_weights_pd.diff_weights_desc(), eng, p->w_user));
  return p;
}

std::shared_ptr<const Primitives> Get(const std::vector<int64_t>& dims,
                                      const std::vector<int64_t>& conv) {
  static std::mutex mu;
  static auto* cache = new std::map<Key, std::shared_ptr<const Primitives>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*cache)[Key(dims, conv)];
  if (!slot) slot = Make(dims, conv);
  return slot;
}

// Runs `prim` on `args` with a scratchpad of the size its primitive_desc asks for.
void Run(const dnnl::primitive& prim, const memory::desc& scratchpad,
         std::unordered_map<int, memory> args) {
  std::vector<uint8_t> buffer(scratchpad.get_size());
  args.insert({DNNL_ARG_SCRATCHPAD, memory(scratchpad, Engine(), buffer.data())});
  dnnl::stream stream(Engine());
  prim.execute(stream, args);
  stream.wait();
}

// Converts `w` (user layout) into `desc`'s layout; returns the memory to pass to a primitive.
memory Weights(const dnnl::reorder& to, const memory::desc& desc, memory w,
               std::vector<float>& storage) {
  if (desc == w.get_desc()) return w;
  storage.resize(desc.get_size() / sizeof(float));
  memory out(desc, Engine(), storage.data());
  dnnl::stream stream(Engine());
  to.execute(stream, w, out);
  stream.wait();
  return out;
}

using Ints = ffi::Span<const int64_t>;
using F32 = ffi::Buffer<ffi::F32>;

// The primitives for x [N, H, W, C], kernel w [KH, KW, C, O] and y [N, OH, OW, O]; null if
// those are not such shapes or the attributes are not 2 ints each.
std::shared_ptr<const Primitives> Find(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                                       ffi::Span<const int64_t> y, Ints strides, Ints lo,
                                       Ints hi) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4 || strides.size() != 2 ||
      lo.size() != 2 || hi.size() != 2 || w[2] != x[3] || y[0] != x[0] || y[3] != w[3]) {
    return nullptr;
  }
  return Get({x[0], x[1], x[2], x[3], w[0], w[1], w[3], y[1], y[2]},
             {strides[0], strides[1], lo[0], lo[1], hi[0], hi[1]});
}

ffi::Error BadShapes() {
  return ffi::Error::InvalidArgument("onednn_conv: expected x NHWC, kernel HWIO, y NHWC "
                                     "with matching sizes and 2 strides / paddings");
}

// Runs `prim` (the forward pass or the input gradient) on `args` and the HWIO kernel `w`,
// reordered into `desc`, the kernel layout the primitive chose.
void RunWithKernel(const dnnl::primitive& prim, const memory::desc& scratchpad,
                   const dnnl::reorder& to, const memory::desc& desc, const Primitives& p,
                   F32 w, std::unordered_map<int, memory> args) {
  std::vector<float> storage;
  args.insert({DNNL_ARG_WEIGHTS, Weights(to, desc, memory(p.w_user, Engine(), w.typed_data()),
                                         storage)});
  Run(prim, scratchpad, std::move(args));
}

ffi::Error Forward(F32 x, F32 w, ffi::ResultBuffer<ffi::F32> y, Ints strides, Ints lo, Ints hi) {
  auto p = Find(x.dimensions(), w.dimensions(), y->dimensions(), strides, lo, hi);
  if (!p) return BadShapes();
  RunWithKernel(p->fwd, p->fwd_pd.scratchpad_desc(), p->w_to_fwd, p->fwd_pd.weights_desc(), *p,
                w, {{DNNL_ARG_SRC, memory(p->x, Engine(), x.typed_data())},
                    {DNNL_ARG_DST, memory(p->y, Engine(), y->typed_data())}});
  return ffi::Error::Success();
}

ffi::Error BackwardData(F32 dy, F32 w, ffi::ResultBuffer<ffi::F32> dx, Ints strides, Ints lo,
                        Ints hi) {
  auto p = Find(dx->dimensions(), w.dimensions(), dy.dimensions(), strides, lo, hi);
  if (!p) return BadShapes();
  RunWithKernel(p->bwd_data, p->bwd_data_pd.scratchpad_desc(), p->w_to_bwd_data,
                p->bwd_data_pd.weights_desc(), *p, w,
                {{DNNL_ARG_DIFF_DST, memory(p->y, Engine(), dy.typed_data())},
                 {DNNL_ARG_DIFF_SRC, memory(p->x, Engine(), dx->typed_data())}});
  return ffi::Error::Success();
}

ffi::Error BackwardWeights(F32 x, F32 dy, ffi::ResultBuffer<ffi::F32> dw, Ints strides, Ints lo,
                           Ints hi) {
  auto p = Find(x.dimensions(), dw->dimensions(), dy.dimensions(), strides, lo, hi);
  if (!p) return BadShapes();
  memory dw_user(p->w_user, Engine(), dw->typed_data());
  const memory::desc& desc = p->bwd_weights_pd.diff_weights_desc();
  std::vector<float> storage;
  memory out = dw_user;
  if (!(desc == p->w_user)) {
    storage.resize(desc.get_size() / sizeof(float));
    out = memory(desc, Engine(), storage.data());
  }
  Run(p->bwd_weights, p->bwd_weights_pd.scratchpad_desc(),
      {{DNNL_ARG_SRC, memory(p->x, Engine(), x.typed_data())},
       {DNNL_ARG_DIFF_DST, memory(p->y, Engine(), dy.typed_data())},
       {DNNL_ARG_DIFF_WEIGHTS, out}});
  if (!(desc == p->w_user)) {
    dnnl::stream stream(Engine());
    p->dw_to_user.execute(stream, out, dw_user);
    stream.wait();
  }
  return ffi::Error::Success();
}

}  // namespace

#define GEN_JAX_CONV_HANDLER(name, impl)                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, impl,                                            \
                                ffi::Ffi::Bind()                                       \
                                    .Arg<F32>()                                        \
                                    .Arg<F32>()                                        \
                                    .Ret<ffi::Buffer<ffi::F32>>()                      \
                                    .Attr<Ints>("strides")                             \
                                    .Attr<Ints>("padding_lo")                          \
                                    .Attr<Ints>("padding_hi"));

GEN_JAX_CONV_HANDLER(GenJaxOnednnConvForward, Forward)
GEN_JAX_CONV_HANDLER(GenJaxOnednnConvBackwardData, BackwardData)
GEN_JAX_CONV_HANDLER(GenJaxOnednnConvBackwardWeights, BackwardWeights)
