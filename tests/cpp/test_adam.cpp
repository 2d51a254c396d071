// test_adam.cpp -- kernels/cuda/adam.cuh on the emulator, through adam_step<T> (the launch function the
// cuda-sim glue csrc/cuda/adam.cpp calls once per table of <= kAdamMaxTensors tensors), against a
// double-precision reference of torch.optim's Adam / AdamW.  The table is built as the glue builds it
// (first tiles from adam_tiles, the host-advanced step or the device step pointer, counters + start).
// Covered: float / double / __half / __nv_bfloat16 params (fp32 state for the 16-bit ones); several
// tensors per launch with sizes that are not multiples of the vector width or of the tile (0, 1, 37,
// tile + 1, 2 tiles + 5); a pointer 1 element off its 16-byte alignment in each array in turn (the
// scalar path for that tensor); Adam (L2) and AdamW (decoupled) weight decay; amsgrad; maximize; both
// forms of the lerp (1 - beta1 below / above 0.5); capturable mode (step and lr in "device" memory,
// float32 and float64, the per-tensor arrival counters); an lr tensor without capturable; more tensors
// than one table holds; NaN gradients.  Every case runs several steps so the bias corrections change.
#include "harness.h"
#include "kernels/cuda/adam.cuh"

namespace {
using namespace harness;
using pyops::cuda::acc_t;
using pyops::cuda::AdamHyper;
using pyops::cuda::AdamLaunch;
using pyops::cuda::AdamPlan;
using pyops::cuda::AdamTensor;

const char* const kKernel = "adam_multi_tensor_kernel";

// The arrays of one param, in the order of the table entry.
enum Arr { P, G, M, V, VM, NARR };

struct TensorSpec {
  int64_t numel;
  int off[NARR] = {0, 0, 0, 0, 0};  // elements before each array's data: 1 breaks its 16-byte alignment
};

enum class Lr { Scalar, F32, F64 };  // hyper.lr, or a one-element lr tensor on the device (float32 / float64)

struct Spec {
  std::vector<TensorSpec> tensors;
  AdamHyper h;       // h.lr: the first step's lr (it grows by half of it per step, as under a scheduler)
  int steps = 3;
  double t0 = 0;     // step count before the first step; > 0: a mid-training state instead of zeros
  bool capturable = false, step_f64 = false;
  Lr lr = Lr::Scalar;
  bool nan_grad = false;  // one NaN gradient element in tensor 0 at the second step
};

// One param, its grad and state (each array in a heap block of exactly its elements, so ASan sees
// any overrun), and the reference values in double.
template <class T> struct Param {
  using A = acc_t<T>;
  Matrix<T> p, g;
  Matrix<A> m, v, vm;
  std::vector<double> rp, rm, rv, rvm;
  explicit Param(const TensorSpec& s)
      : p(1, s.numel, s.numel, s.off[P]), g(1, s.numel, s.numel, s.off[G]), m(1, s.numel, s.numel, s.off[M]),
        v(1, s.numel, s.numel, s.off[V]), vm(1, s.numel, s.numel, s.off[VM]) {}
};

template <class U> std::vector<double> values(const Matrix<U>& x) {
  std::vector<double> out(size_t(x.cols()));
  for (int64_t i = 0; i < x.cols(); ++i) out[size_t(i)] = x.get(0, i);
  return out;
}
template <class U> double round_to(double x) { return to_double(from_double<U>(x)); }
template <class U> bool front_intact(const Matrix<U>& x, int off) {  // the element before a shifted pointer
  const U s = Matrix<U>::sentinel();
  return off == 0 || std::memcmp(x.data() - 1, &s, sizeof(U)) == 0;
}
double nan_max(double a, double b) { return (std::isnan(a) || a > b) ? a : b; }  // torch.maximum

// One step of torch.optim's Adam / AdamW on every element, in double, from the values as stored; the
// results are rounded to their storage types (param T, state acc_t<T>), as the kernel stores them.
template <class T> void reference_step(Param<T>& x, const AdamHyper& h, double t, double lr) {
  using A = acc_t<T>;
  const double bc1 = 1 - std::pow(h.beta1, t), bc2 = 1 - std::pow(h.beta2, t);
  for (int64_t i = 0; i < x.p.cols(); ++i) {
    const size_t k = size_t(i);
    double p = x.rp[k], g = x.g.get(0, i), m = x.rm[k], v = x.rv[k];
    if (h.maximize) g = -g;
    if (h.weight_decay != 0) {
      if (h.decoupled_weight_decay) p *= 1 - lr * h.weight_decay;
      else g += h.weight_decay * p;
    }
    m = h.beta1 * m + (1 - h.beta1) * g;
    v = h.beta2 * v + (1 - h.beta2) * g * g;
    double vv = v;
    if (h.amsgrad) vv = x.rvm[k] = round_to<A>(nan_max(x.rvm[k], v));
    p -= lr / bc1 * m / (std::sqrt(vv) / std::sqrt(bc2) + h.eps);
    x.rp[k] = round_to<T>(p);
    x.rm[k] = round_to<A>(m);
    x.rv[k] = round_to<A>(v);
  }
}

// The first step's lr: larger for the 16-bit types, whose tolerances (two ulps) would hide 3 steps of 1e-3.
template <class T> double base_lr() {
  return std::is_same_v<T, __nv_bfloat16> ? 5e-2 : std::is_same_v<T, __half> ? 1e-2 : 1e-3;
}
// Param tolerances: the dtype's own for float/double; two ulps for fp16/bf16 (the kernel and the
// reference round the new param independently, so a value next to a rounding boundary may land one
// ulp apart, which later steps carry).  That ulp reaches the fp32 state through the L2 term wd * p,
// hence the looser state tolerances for the 16-bit types.
template <class T> double p_rtol() {
  return std::is_same_v<T, __half> ? 0x1p-9 : std::is_same_v<T, __nv_bfloat16> ? 0x1p-6 : Dtype<T>::rtol;
}
template <class T> double p_atol() { return sizeof(T) == 2 ? 1e-5 : Dtype<T>::atol; }
template <class T> double s_rtol() { return sizeof(T) == 2 ? 1e-4 : Dtype<acc_t<T>>::rtol; }
template <class T> double s_atol() { return sizeof(T) == 2 ? 5e-5 : Dtype<acc_t<T>>::atol; }

template <class T> void run(const std::string& name, const Spec& s) {
  using A = acc_t<T>;
  auto rng = rng_for(name);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> spread(0.5, 1.5);
  const size_t n = s.tensors.size();
  const bool amsgrad = s.h.amsgrad;

  std::vector<std::unique_ptr<Param<T>>> ps;
  for (const TensorSpec& ts : s.tensors) {
    auto x = std::make_unique<Param<T>>(ts);
    x->p.fill([&](int64_t, int64_t) { return normal(rng); });
    if (s.t0 > 0) {  // mid-training: m ~ 0.1 g, v ~ 1e-2 g^2, max_exp_avg_sq on both sides of v
      x->m.fill([&](int64_t, int64_t) { return 0.1 * normal(rng); });
      x->v.fill([&](int64_t, int64_t) { const double g = normal(rng); return 1e-2 * g * g; });
      x->vm.fill([&](int64_t, int64_t c) { return x->v.get(0, c) * spread(rng); });
    } else {  // torch.optim's initial state
      x->m.fill([](int64_t, int64_t) { return 0.0; });
      x->v.fill([](int64_t, int64_t) { return 0.0; });
      x->vm.fill([](int64_t, int64_t) { return 0.0; });
    }
    x->rp = values(x->p), x->rm = values(x->m), x->rv = values(x->v), x->rvm = values(x->vm);
    ps.push_back(std::move(x));
  }

  // "Device" scalars, each its own exact heap block: steps (capturable), lr tensor, arrival counters.
  std::vector<std::unique_ptr<float[]>> step32;
  std::vector<std::unique_ptr<double[]>> step64;
  std::vector<void*> step_ptrs(n, nullptr);
  if (s.capturable)
    for (size_t i = 0; i < n; ++i) {
      if (s.step_f64) step64.emplace_back(new double[1]{s.t0}), step_ptrs[i] = step64.back().get();
      else step32.emplace_back(new float[1]{float(s.t0)}), step_ptrs[i] = step32.back().get();
    }
  std::unique_ptr<float[]> lr32(new float[1]{0});
  std::unique_ptr<double[]> lr64(new double[1]{0});
  std::unique_ptr<int[]> counters(s.capturable ? new int[n]() : nullptr);

  for (int k = 0; k < s.steps; ++k) {
    const double t = s.t0 + k + 1;  // this step's count
    double lr = s.h.lr * (1 + 0.5 * k);
    AdamHyper h = s.h;
    const void* lr_ptr = nullptr;
    if (s.lr == Lr::F32) lr = *lr32.get() = float(lr), lr_ptr = lr32.get();
    if (s.lr == Lr::F64) *lr64.get() = lr, lr_ptr = lr64.get();
    h.lr = lr_ptr ? 123.0 : lr;  // with an lr tensor the kernel must not use hyper.lr
    for (size_t i = 0; i < n; ++i) {
      Param<T>& x = *ps[i];
      x.g.fill([&](int64_t, int64_t c) { return c % 17 == 3 ? 0.0 : normal(rng); });  // some zero grads
      if (s.nan_grad && i == 0 && k == 1 && x.g.cols() > 0) x.g.set(0, std::min<int64_t>(5, x.g.cols() - 1), NAN);
    }

    // The glue's launch loop: one table (one launch) per kAdamMaxTensors params.
    const long before = launches(kKernel);
    long tables = 0;
    for (size_t start = 0; start < n; start += pyops::cuda::kAdamMaxTensors, ++tables) {
      const size_t count = std::min<size_t>(pyops::cuda::kAdamMaxTensors, n - start);
      AdamLaunch<T> L{};
      L.hyper = h;
      L.lr_ptr = lr_ptr;
      L.lr_f64 = s.lr == Lr::F64;
      L.capturable = s.capturable;
      L.step_f64 = s.step_f64;
      L.counters = s.capturable ? counters.get() + start : nullptr;
      L.n_tensors = int(count);
      int64_t tiles = 0;
      for (size_t j = 0; j < count; ++j) {
        Param<T>& x = *ps[start + j];
        AdamTensor<T>& e = L.tensors[j];
        e.param = x.p.data();
        e.grad = x.g.data();
        e.exp_avg = x.m.data();
        e.exp_avg_sq = x.v.data();
        e.max_exp_avg_sq = amsgrad ? x.vm.data() : nullptr;
        e.numel = x.p.cols();
        e.first_tile = tiles;
        e.step = s.capturable ? 0.0 : t;  // non-capturable: the host already advanced it
        e.step_ptr = step_ptrs[start + j];
        tiles += pyops::cuda::adam_tiles(e.numel, sizeof(A));
      }
      L.total_tiles = tiles;
      AdamPlan plan{};
      const char* err = pyops::cuda::adam_step<T>(L, nullptr, &plan);
      expect(err == nullptr, std::string("launch status: ") + (err ? err : ""));
      expect(plan.vec == int(16 / sizeof(A)) && plan.tile == int64_t(plan.vec) * 256 * 4,
             "plan: vec " + std::to_string(plan.vec) + ", tile " + std::to_string(plan.tile));
      expect(plan.cfg.block.x == 256 && plan.cfg.block.y == 1 && plan.cfg.grid.y == 1 &&
                 int64_t(plan.cfg.grid.x) == std::min<int64_t>(tiles, pyops::cuda::kAdamMaxGrid),
             "plan: grid " + std::to_string(plan.cfg.grid.x) + " for " + std::to_string(tiles) + " tiles");
    }
    expect(launches(kKernel) == before + tables, std::string(kKernel) + " was not launched once per table");

    if (s.capturable)
      for (size_t i = 0; i < n; ++i) {
        const double got = s.step_f64 ? *static_cast<double*>(step_ptrs[i]) : *static_cast<float*>(step_ptrs[i]);
        expect(got == t, "step " + std::to_string(k) + ": device step of tensor " + std::to_string(i) + " is " +
                             std::to_string(got) + ", expected " + std::to_string(t));
        expect(counters[i] == 0, "step " + std::to_string(k) + ": arrival counter of tensor " + std::to_string(i) +
                                     " is " + std::to_string(counters[i]) + ", expected 0");
      }
    for (auto& x : ps) reference_step(*x, s.h, t, lr);
  }

  for (size_t i = 0; i < n; ++i) {
    Param<T>& x = *ps[i];
    const std::string at = "tensor " + std::to_string(i) + " (numel " + std::to_string(x.p.cols()) + ") ";
    expect_close(at + "param", x.p, x.rp, p_rtol<T>(), p_atol<T>());
    expect_close(at + "exp_avg", x.m, x.rm, s_rtol<T>(), s_atol<T>());
    expect_close(at + "exp_avg_sq", x.v, x.rv, s_rtol<T>(), s_atol<T>());
    if (amsgrad) expect_close(at + "max_exp_avg_sq", x.vm, x.rvm, s_rtol<T>(), s_atol<T>());
    else expect(values(x.vm) == x.rvm, at + "max_exp_avg_sq changed without amsgrad");
    const TensorSpec& ts = s.tensors[i];
    expect(front_intact(x.p, ts.off[P]) && front_intact(x.g, ts.off[G]) && front_intact(x.m, ts.off[M]) &&
               front_intact(x.v, ts.off[V]) && front_intact(x.vm, ts.off[VM]),
           at + "an element before a shifted pointer was written");
  }
}

// Tensors of one launch.  Tile: 4096 elements (fp32 state), 2048 (fp64).  1000 is a multiple of every
// vector width (4 floats, 2 doubles); the other sizes end in a partial vector and/or a partial tile.
template <class T> std::vector<TensorSpec> mixed() {
  const int64_t tile = pyops::cuda::adam_tile_elems(sizeof(acc_t<T>));
  return {
      {1},
      {37},
      {1000},
      {tile + 1},                   // 2 tiles: 2 blocks on one tensor, the second holds 1 element
      {1000, {1, 0, 0, 0, 0}},      // param misaligned: this tensor takes the scalar path
      {64, {0, 1, 0, 0, 0}},        // grad misaligned
      {64, {0, 0, 1, 1, 0}},        // exp_avg, exp_avg_sq misaligned
      {64, {0, 0, 0, 0, 1}},        // max_exp_avg_sq misaligned (matters with amsgrad only)
  };
}

AdamHyper hyper(double lr, double wd, bool decoupled, bool amsgrad, bool maximize) {
  AdamHyper h;
  h.lr = lr, h.weight_decay = wd, h.decoupled_weight_decay = decoupled, h.amsgrad = amsgrad, h.maximize = maximize;
  return h;
}

template <class T> void register_dtype() {
  const std::string dt = Dtype<T>::name;
  const double lr = base_lr<T>();
  const int64_t tile = pyops::cuda::adam_tile_elems(sizeof(acc_t<T>));
  auto reg = [&](const std::string& what, Spec s) {
    const std::string name = "adam/" + dt + "/" + what;
    add(name, [=] { run<T>(name, s); });
  };
  // Weight decay 0 / 1e-2, L2 / decoupled, amsgrad on / off, maximize, from torch's zero state and
  // from a mid-training state (t0 = 5).
  reg("mixed/adam", {mixed<T>(), hyper(lr, 0, false, false, false)});
  reg("mixed/adam-l2-amsgrad/t0=5", {mixed<T>(), hyper(lr, 1e-2, false, true, false), 3, 5});
  reg("mixed/adamw-maximize", {mixed<T>(), hyper(lr, 1e-2, true, false, true)});
  reg("mixed/adamw-amsgrad-maximize/t0=5", {mixed<T>(), hyper(lr, 1e-2, true, true, true), 3, 5});
  // beta1 = 0.3: lerp weight 0.7 >= 0.5, the second form of lerp; other beta2 and eps too.
  {
    AdamHyper h = hyper(lr, 1e-2, false, true, false);
    h.beta1 = 0.3, h.beta2 = 0.9, h.eps = 1e-6;
    reg("mixed/beta1=0.3-beta2=0.9-eps=1e-6", {mixed<T>(), h, 3, 2});
  }
  // Capturable: steps and lr on the device, the per-tensor arrival counters; an empty tensor (one tile,
  // whose step must still advance) and a tensor of 3 tiles (3 blocks arrive on one counter).
  {
    Spec s{{{0}, {37}, {2 * tile + 5}, {1000, {1, 0, 0, 0, 0}}, {64, {0, 0, 0, 1, 0}}},
           hyper(lr, 1e-2, true, true, false)};
    s.capturable = true, s.lr = Lr::F32;
    reg("capturable/adamw-amsgrad/step-f32/lr-f32", s);
  }
}

const bool registered = [] {
  register_dtype<float>();
  register_dtype<double>();
  register_dtype<__half>();
  register_dtype<__nv_bfloat16>();

  const double lr = 1e-3;
  // Capturable with float64 step and lr tensors, Adam with L2 and maximize, mid-training.
  {
    Spec s{mixed<float>(), hyper(lr, 1e-2, false, false, true), 3, 7};
    s.capturable = true, s.step_f64 = true, s.lr = Lr::F64;
    add("adam/float/capturable/adam-l2-maximize/step-f64/lr-f64", [=] {
      run<float>("adam/float/capturable/adam-l2-maximize/step-f64/lr-f64", s);
    });
  }
  {
    Spec s{{{0}, {1}, {2049, {0, 0, 1, 0, 0}}, {3000}}, hyper(lr, 0, false, true, false)};
    s.capturable = true, s.lr = Lr::Scalar;
    add("adam/double/capturable/amsgrad/step-f32/lr-scalar", [=] {
      run<double>("adam/double/capturable/amsgrad/step-f32/lr-scalar", s);
    });
  }
  // An lr tensor on the device without capturable (the glue passes it whenever it is on the params' device).
  {
    Spec s{mixed<float>(), hyper(lr, 1e-2, true, false, false)};
    s.lr = Lr::F32;
    add("adam/float/lr-tensor-f32/adamw", [=] { run<float>("adam/float/lr-tensor-f32/adamw", s); });
    s.lr = Lr::F64;
    add("adam/float/lr-tensor-f64/adamw", [=] { run<float>("adam/float/lr-tensor-f64/adamw", s); });
  }
  // More params than one table holds: the glue's 54 + 6, two launches per step, capturable (counters + start).
  {
    Spec s;
    for (int i = 0; i < 60; ++i) s.tensors.push_back({int64_t(1 + 13 * i), {i % 7 == 3 ? 1 : 0, 0, 0, 0, 0}});
    s.h = hyper(lr, 1e-2, true, true, false);
    s.capturable = true, s.lr = Lr::F32, s.steps = 2;
    add("adam/float/60-tensors/2-tables/capturable", [=] { run<float>("adam/float/60-tensors/2-tables/capturable", s); });
    s.capturable = false, s.lr = Lr::Scalar, s.h.lr = base_lr<__nv_bfloat16>();
    add("adam/bfloat16/60-tensors/2-tables", [=] { run<__nv_bfloat16>("adam/bfloat16/60-tensors/2-tables", s); });
  }
  // A NaN gradient: NaN param and state for that element only, kept in max_exp_avg_sq (torch.maximum).
  {
    Spec s{mixed<float>(), hyper(lr, 0, false, true, false)};
    s.nan_grad = true;
    add("adam/float/nan-grad/amsgrad", [=] { run<float>("adam/float/nan-grad/amsgrad", s); });
    s.h.amsgrad = false;
    add("adam/half/nan-grad", [=] {
      Spec s16 = s;
      s16.h.lr = base_lr<__half>();
      run<__half>("adam/half/nan-grad", s16);
    });
  }
  return true;
}();
}  // namespace
