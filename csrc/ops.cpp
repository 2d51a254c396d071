// ops.cpp -- every operator schema of pyops, written once (define_schemas), and the Python module of the
// extension.
//
// The schemas are defined in three operator namespaces, one per backend family: `pyops` in pyops._C (CPU
// kernels from csrc/cpu, CUDA kernels from csrc/cuda), `pyops_triton` in pyops._C too (csrc/triton.cpp: the
// ops' checks and outputs, then the Triton launchers of kernels/<op>.py) and, when this file is compiled again
// with PYOPS_SIM, `pyops_sim` in pyops._C_sim (the CUDA kernels run by the CUDA-on-CPU emulator).  Every
// namespace gets the same Meta kernels (csrc/meta.cpp), so torch.compile traces every op without running it.
// docs/architecture.md has the map.
//
// Naming: <op>_fwd / <op>_bwd are the backend ops (the kernels); <op> is the differentiable op over them, one
// C++ autograd node (csrc/autograd.cpp).  Backward ops take what the forward saved.
#include <Python.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "csrc/adam.h"
#include "csrc/common.h"
#include "csrc/cpu/gemm.h"
#include "csrc/train_step.h"
#include "kernels/cuda/adam_hparams.h"

#if defined(PYOPS_SIM)
namespace pyops::sim {
std::map<std::string, long> launch_counts();  // csrc/sim/kernels.cpp
void reset_launch_counts();
}  // namespace pyops::sim
#endif

namespace {

void define_schemas(torch::Library& m) {
  // softmax family: dim is any dim of input; output has input's shape (csrc/softmax.h)
  m.def("softmax_fwd(Tensor input, int dim) -> Tensor");
  m.def("log_softmax_fwd(Tensor input, int dim) -> Tensor");
  m.def("softmax_bwd(Tensor grad_output, Tensor output, int dim) -> Tensor");
  m.def("log_softmax_bwd(Tensor grad_output, Tensor output, int dim) -> Tensor");
  // Adam/AdamW: one step for every param of one (device, dtype), in place (csrc/adam.h).  state_steps
  // advance by one (on the host when capturable=False, in the kernel when True); counters: capturable
  // only, one int32 zero per param on the params' device; lr_tensor, when given, replaces lr.  hparams: the
  // hyperparameters declared in kernels/cuda/adam_hparams.h, in its order (a flag as 0 or 1) -- lr, beta1,
  // beta2, eps, weight_decay, amsgrad, ... (pyops._C.adam_hparams() lists them).
  m.def("adam_step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, Tensor? lr_tensor, Tensor(f!)? counters, "
        "bool capturable, float[] hparams) -> ()");
  // linear family: input (*, in_features), weight (out_features, in_features), bias (out_features); relu
  // false is plain linear.  Backward: `output` given <=> the forward applied ReLU; grads not in
  // output_mask come back as empty [0] tensors (csrc/linear_relu.h)
  m.def("linear_relu_fwd(Tensor input, Tensor weight, Tensor? bias, bool relu) -> Tensor");
  m.def("linear_relu_bwd(Tensor grad_output, Tensor input, Tensor weight, Tensor? output, bool[3] output_mask) "
        "-> (Tensor, Tensor, Tensor)");
  // a whole MLP (hidden layers linear+ReLU, the last plain linear) in one op each way: outputs[i] is
  // layer i's output; the backward takes the hidden ones and returns (grad_input, grad_weights.., grad_biases..)
  m.def("mlp_fwd(Tensor input, Tensor[] weights, Tensor?[] biases) -> Tensor[]");
  m.def("mlp_bwd(Tensor grad_output, Tensor input, Tensor[] weights, Tensor[] outputs, bool[] output_mask) "
        "-> Tensor[]");

  // nll_loss / cross_entropy: input (C), (N, C) or (N, C, d1, ...); int64 target (), (N) or (N, d1, ...);
  // reduction 0 none, 1 mean, 2 sum; lse and total_weight are what the backward needs (csrc/cross_entropy.h)
  m.def("nll_loss_fwd(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index) -> (Tensor, Tensor)");
  m.def("nll_loss_bwd(Tensor grad_loss, Tensor input, Tensor target, Tensor? weight, Tensor total_weight, "
        "int reduction, int ignore_index) -> Tensor");
  m.def("cross_entropy_fwd(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index, "
        "float label_smoothing) -> (Tensor, Tensor, Tensor)");
  m.def("cross_entropy_bwd(Tensor grad_loss, Tensor input, Tensor target, Tensor? weight, Tensor lse, "
        "Tensor total_weight, int reduction, int ignore_index, float label_smoothing) -> Tensor");

  // the differentiable ops the Python API calls: one C++ autograd node each over the ops above
  // (csrc/autograd.cpp); the arguments as in the <op>_fwd above
  m.def("softmax(Tensor input, int dim) -> Tensor");
  m.def("log_softmax(Tensor input, int dim) -> Tensor");
  m.def("linear_relu(Tensor input, Tensor weight, Tensor? bias, bool relu) -> Tensor");
  m.def("mlp(Tensor input, Tensor[] weights, Tensor?[] biases, int? log_softmax_dim=None) -> Tensor");
  m.def("nll_loss(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index) -> Tensor");
  m.def("cross_entropy(Tensor input, Tensor target, Tensor? weight, int reduction, int ignore_index, "
        "float label_smoothing) -> Tensor");
  // one training step of an MLP classifier with no autograd graph (csrc/autograd.cpp): mlp_fwd, the loss
  // (cross_entropy, or log_softmax + nll_loss when log_softmax_nll) and its backward, mlp_bwd, then adam_step
  // on the weights and the existing biases (with_bias as in mlp); the Adam arguments as in adam_step.  Returns
  // the loss (reduction mean or sum).
  m.def("mlp_train_step(Tensor input, Tensor target, Tensor(a!)[] weights, Tensor(b!)[] biases, bool[] with_bias, "
        "Tensor(c!)[] exp_avgs, Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] state_steps, "
        "Tensor? lr_tensor, Tensor(g!)? counters, bool capturable, float[] hparams, bool log_softmax_nll, "
        "Tensor? weight, int reduction, int ignore_index, float label_smoothing) -> Tensor");
}

}  // namespace

PYOPS_LIBRARY(m) { define_schemas(m); }
#if !defined(PYOPS_SIM)
TORCH_LIBRARY(pyops_triton, m) { define_schemas(m); }
#endif

// ---- Python module: importing it runs the registrations above; a few functions describe the build.
namespace {

PyObject* build_info(PyObject*, PyObject*) {
  return Py_BuildValue("{s:O,s:s,s:s,s:O,s:O}",                            //
                       "cuda", PYOPS_WITH_CUDA ? Py_True : Py_False,        //
                       "cuda_archs", PYOPS_CUDA_ARCHS,                      //
                       "nvcc", PYOPS_NVCC_VERSION,                          //
                       "cpu_avx2", PYOPS_CPU_AVX2 ? Py_True : Py_False,     //
#if defined(PYOPS_SIM)
                       "sim", Py_True
#else
                       "sim", Py_False
#endif
  );
}

#if defined(PYOPS_SIM)
PyObject* launch_counts(PyObject*, PyObject*) {
  PyObject* d = PyDict_New();
  for (const auto& [name, n] : pyops::sim::launch_counts()) {
    PyObject* v = PyLong_FromLong(n);
    PyDict_SetItemString(d, name.c_str(), v);
    Py_DECREF(v);
  }
  return d;
}
PyObject* reset_launch_counts(PyObject*, PyObject*) {
  pyops::sim::reset_launch_counts();
  Py_RETURN_NONE;
}
#endif

// The Adam hyperparameters of kernels/cuda/adam_hparams.h for Python: (name, "float" or "bool", default,
// param-group key) each, in the order of the ops' `hparams` list.
PyObject* adam_hparam(const char* name, double value, const char* key) {
  return Py_BuildValue("(ssds)", name, "float", value, key);
}
PyObject* adam_hparam(const char* name, bool value, const char* key) {
  return Py_BuildValue("(ssOs)", name, "bool", value ? Py_True : Py_False, key);
}

PyObject* adam_hparams(PyObject*, PyObject*) {
  PyObject* out = PyTuple_New(pyops::cuda::kAdamNumHparams);
  if (out == nullptr) return nullptr;
  Py_ssize_t i = 0;
#define PYOPS_ADAM_ENTRY(type, name, default_value, key, valid, rule) \
  if (PyObject* entry = adam_hparam(#name, type(default_value), key)) { \
    PyTuple_SET_ITEM(out, i, entry);                                    \
    ++i;                                                                \
  } else {                                                              \
    Py_DECREF(out);                                                     \
    return nullptr;                                                     \
  }
  PYOPS_ADAM_HPARAMS(PYOPS_ADAM_ENTRY)
#undef PYOPS_ADAM_ENTRY
  return out;
}

// A prepared call of <namespace>::mlp_train_step, made by pyops.mlp_train_step's cached plan
// (pyops/train_step.py): what stays the same from step to step -- the weight, bias and optimizer-state lists,
// the loss arguments -- is converted from Python once, here; each call passes the batch and the
// hyperparameters and goes through the dispatcher as a typed (unboxed) call.  So it is the op's call in every
// respect -- its kernel, the dispatch keys, profiler ranges, dispatch modes, errors -- without converting the
// ~40 list elements from Python objects at every step, which torch.ops does (~16 of ~46 us for a tiny
// network's step on the development VM).  The GIL is released while the op runs, as torch.ops does.  `op` is
// the qualified name; typed() refuses an op whose schema is not mlp_train_step's (MlpTrainStepSig).
class TrainStepCall {
 public:
  TrainStepCall(const std::string& op, std::vector<at::Tensor> weights, std::vector<at::Tensor> biases,
                const std::vector<bool>& with_bias, std::vector<at::Tensor> exp_avgs,
                std::vector<at::Tensor> exp_avg_sqs, std::vector<at::Tensor> max_exp_avg_sqs,
                std::vector<at::Tensor> state_steps, bool log_softmax_nll, std::optional<at::Tensor> weight,
                int64_t reduction, int64_t ignore_index, double label_smoothing)
      : op_(c10::Dispatcher::singleton().findSchemaOrThrow(op.c_str(), "").typed<pyops::MlpTrainStepSig>()),
        weights_(std::move(weights)), biases_(std::move(biases)), exp_avgs_(std::move(exp_avgs)),
        exp_avg_sqs_(std::move(exp_avg_sqs)), max_exp_avg_sqs_(std::move(max_exp_avg_sqs)),
        state_steps_(std::move(state_steps)), weight_(std::move(weight)), log_softmax_nll_(log_softmax_nll),
        reduction_(reduction), ignore_index_(ignore_index), label_smoothing_(label_smoothing) {
    for (const bool b : with_bias) with_bias_.push_back(b);
  }
  at::Tensor operator()(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& lr_tensor,
                        const std::optional<at::Tensor>& counters, bool capturable,
                        const std::vector<double>& hparams) const {
    return op_.call(input, target, weights_, biases_, with_bias_, exp_avgs_, exp_avg_sqs_, max_exp_avg_sqs_,
                    state_steps_, lr_tensor, counters, capturable, hparams, log_softmax_nll_, weight_, reduction_,
                    ignore_index_, label_smoothing_);
  }

 private:
  c10::TypedOperatorHandle<pyops::MlpTrainStepSig> op_;
  std::vector<at::Tensor> weights_, biases_, exp_avgs_, exp_avg_sqs_, max_exp_avg_sqs_, state_steps_;
  c10::List<bool> with_bias_;
  std::optional<at::Tensor> weight_;
  bool log_softmax_nll_;
  int64_t reduction_, ignore_index_;
  double label_smoothing_;
};

// A prepared call of <namespace>::adam_step for one bucket of pyops.optim.Adam (pyops/optim.py's cached plan),
// as TrainStepCall is for mlp_train_step: the params and their state lists are converted from Python once;
// each step passes the gradients and the hyperparameters.  torch.ops converts the ~40 tensors of the tutorial
// MLP's five lists at every step, and drops its reference to each with the GIL released, which takes the GIL
// back once per tensor.  The dispatcher call is the same typed call (kernel, dispatch keys, profiler range,
// dispatch modes, errors); the GIL is released while the op runs.
class AdamStepCall {
 public:
  AdamStepCall(const std::string& op, std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avgs,
               std::vector<at::Tensor> exp_avg_sqs, std::vector<at::Tensor> max_exp_avg_sqs,
               std::vector<at::Tensor> state_steps)
      : op_(c10::Dispatcher::singleton().findSchemaOrThrow(op.c_str(), "").typed<pyops::AdamStepSig>()),
        params_(std::move(params)), exp_avgs_(std::move(exp_avgs)), exp_avg_sqs_(std::move(exp_avg_sqs)),
        max_exp_avg_sqs_(std::move(max_exp_avg_sqs)), state_steps_(std::move(state_steps)) {}
  void operator()(const std::vector<at::Tensor>& grads, const std::optional<at::Tensor>& lr_tensor,
                  const std::optional<at::Tensor>& counters, bool capturable, const std::vector<double>& hparams) const {
    op_.call(params_, grads, exp_avgs_, exp_avg_sqs_, max_exp_avg_sqs_, state_steps_, lr_tensor, counters, capturable,
             hparams);
  }
  // The same call with each param's own .grad, read here: no Python object is made for a gradient (`p.grad` in
  // Python wraps each one, and the list of them is dropped after the call).  False, and nothing done, when a param
  // has no gradient (the caller then takes the general path).  Called with the GIL held; released for the op.
  bool with_param_grads(const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters,
                        bool capturable, const std::vector<double>& hparams) const {
    std::vector<at::Tensor> grads;
    grads.reserve(params_.size());
    for (const at::Tensor& p : params_) {
      const at::Tensor& g = p.grad();
      if (!g.defined()) return false;
      grads.push_back(g);
    }
    pybind11::gil_scoped_release no_gil;
    (*this)(grads, lr_tensor, counters, capturable, hparams);
    return true;
  }

 private:
  c10::TypedOperatorHandle<pyops::AdamStepSig> op_;
  std::vector<at::Tensor> params_, exp_avgs_, exp_avg_sqs_, max_exp_avg_sqs_, state_steps_;
};

// Which code a float32 GEMM C[m, n] = A[m, k] B[k, n] of the CPU backend runs: "avx512" or "avx2" (the own
// GEMM's kernels, csrc/cpu/gemm.h) or "blas"; and the kernel of this process.  Both raise on a bad
// PYOPS_CPU_GEMM, as the first CPU linear op would; set_cpu_gemm_kernel switches the kernel (benchmarks, tests).
// A string from f(), a c10::Error (a bad PYOPS_CPU_GEMM, a kernel that cannot run here) as RuntimeError.
template <class F> PyObject* gemm_string(F&& f) {
  try {
    return PyUnicode_FromString(f());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    return nullptr;
  }
}

// set_grads_none(params): `p.grad = None` for every tensor of a list, as optimizer.zero_grad() does, without
// making a Python object for each gradient (`p.grad is not None` in Python wraps it first).  Only for plain
// tensors and Parameters: False, and nothing done, when it is not a list or holds anything else (a subclass may
// define what setting .grad means; the caller then runs the Python loop).
PyObject* set_grads_none(PyObject*, PyObject* arg) {
  if (!PyList_Check(arg)) Py_RETURN_FALSE;
  const Py_ssize_t n = PyList_GET_SIZE(arg);
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!THPVariable_CheckExact(PyList_GET_ITEM(arg, i))) Py_RETURN_FALSE;
  for (Py_ssize_t i = 0; i < n; ++i) {
    const at::Tensor& t = THPVariable_Unpack(PyList_GET_ITEM(arg, i));
    if (t.grad().defined()) t.mutable_grad().reset();
  }
  Py_RETURN_TRUE;
}

// module_states(mods): (tuple of each module's .training, tuple of whether each has a forward or backward hook),
// what pyops.fuse's fused forward keys its code on at every call (pyops/_fuse.py, _FusedForward.__call__): the
// same as tuple(map(attrgetter("training"), mods)) and tuple(map(any, map(attrgetter(<the four hook dicts>),
// mods))) -- each attribute read, then each dict's truth -- with no Python tuple per module.
PyObject* module_states(PyObject*, PyObject* mods) {
  static PyObject* const training = PyUnicode_InternFromString("training");
  static PyObject* const hook_names[4] = {
      PyUnicode_InternFromString("_forward_hooks"), PyUnicode_InternFromString("_forward_pre_hooks"),
      PyUnicode_InternFromString("_backward_hooks"), PyUnicode_InternFromString("_backward_pre_hooks")};
  if (!PyTuple_Check(mods)) {
    PyErr_SetString(PyExc_TypeError, "module_states: expected a tuple of modules");
    return nullptr;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(mods);
  PyObject* modes = PyTuple_New(n);
  PyObject* hooks = PyTuple_New(n);
  if (!modes || !hooks) goto fail;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* m = PyTuple_GET_ITEM(mods, i);
    PyObject* mode = PyObject_GetAttr(m, training);
    if (!mode) goto fail;
    PyTuple_SET_ITEM(modes, i, mode);
    PyObject* dicts[4] = {nullptr, nullptr, nullptr, nullptr};
    bool ok = true, any = false;
    for (int k = 0; k < 4 && ok; ++k) ok = (dicts[k] = PyObject_GetAttr(m, hook_names[k])) != nullptr;
    for (int k = 0; k < 4 && ok && !any; ++k) {
      const int truth = PyObject_IsTrue(dicts[k]);
      ok = truth >= 0;
      any = truth > 0;
    }
    for (PyObject* d : dicts) Py_XDECREF(d);
    if (!ok) goto fail;
    PyTuple_SET_ITEM(hooks, i, PyBool_FromLong(any));
  }
  {
    PyObject* out = PyTuple_Pack(2, modes, hooks);
    Py_DECREF(modes);
    Py_DECREF(hooks);
    return out;
  }
fail:
  Py_XDECREF(modes);
  Py_XDECREF(hooks);
  return nullptr;
}

PyObject* cpu_gemm_path(PyObject*, PyObject* args) {
  long long m = 0, n = 0, k = 0;
  if (!PyArg_ParseTuple(args, "LLL", &m, &n, &k)) return nullptr;
  namespace sg = pyops::cpu::sgemm;
  return gemm_string([&] { return sg::usable(m, n, k) ? sg::kernel_name(sg::kernel()) : "blas"; });
}

PyObject* cpu_gemm_kernel(PyObject*, PyObject*) {
  namespace sg = pyops::cpu::sgemm;
  return gemm_string([] { return sg::kernel_name(sg::kernel()); });
}

PyObject* set_cpu_gemm_kernel(PyObject*, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  namespace sg = pyops::cpu::sgemm;
  return gemm_string([&] { return sg::kernel_name(sg::set_kernel(name)); });
}

#if !defined(PYOPS_SIM)
PyObject* cpu_adam_idle_blocks(PyObject*, PyObject*) { return PyLong_FromLongLong(pyops::cpu::adam_idle_blocks()); }
#endif

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "How this extension was built: CUDA, architectures, nvcc, AVX2."},
    {"module_states", module_states, METH_O,
     "module_states(mods): (each module's .training, whether each has forward/backward hooks), as two tuples."},
    {"set_grads_none", set_grads_none, METH_O,
     "set_grads_none(params): p.grad = None for each tensor of the list; False (nothing done) when an item is not a "
     "plain tensor or Parameter."},
    {"adam_hparams", adam_hparams, METH_NOARGS,
     "The hyperparameters of adam_step's and mlp_train_step's `hparams` list, in its order: (name, 'float' or "
     "'bool', default, param-group key) each (kernels/cuda/adam_hparams.h)."},
    {"cpu_gemm_path", cpu_gemm_path, METH_VARARGS,
     "cpu_gemm_path(m, n, k): the code a float32 CPU GEMM of that shape runs: 'avx512', 'avx2' or 'blas'."},
    {"cpu_gemm_kernel", cpu_gemm_kernel, METH_NOARGS,
     "The own GEMM's kernel in this process ('avx512', 'avx2'), or 'blas' (PYOPS_CPU_GEMM, the CPU, the build)."},
    {"set_cpu_gemm_kernel", set_cpu_gemm_kernel, METH_VARARGS,
     "set_cpu_gemm_kernel(name): 'auto', 'avx512', 'avx2' or 'blas' for every later float32 CPU GEMM of the "
     "process; returns the previous kernel's name.  Raises if this build or CPU cannot run it."},
#if !defined(PYOPS_SIM)
    {"cpu_adam_idle_blocks", cpu_adam_idle_blocks, METH_NOARGS,
     "Blocks of 128 floats that the CPU Adam kernel has sent through its idle-lane path (float32, AVX2) so far."},
#endif
#if defined(PYOPS_SIM)
    {"launch_counts", launch_counts, METH_NOARGS,
     "Emulated kernel launches so far, by kernel name (template arguments stripped)."},
    {"reset_launch_counts", reset_launch_counts, METH_NOARGS, "Forget the launch counts."},
#endif
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, C10_STRINGIZE(TORCH_EXTENSION_NAME), "pyops compiled operators",
                          -1, methods};

}  // namespace

PyMODINIT_FUNC C10_CONCATENATE(PyInit_, TORCH_EXTENSION_NAME)(void) {
#if PYOPS_CPU_AVX2 && (defined(__x86_64__) || defined(__i386__))
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    PyErr_SetString(PyExc_ImportError,
                    "pyops: this build's CPU kernels use AVX2+FMA, which this CPU lacks; "
                    "rebuild with PYOPS_CPU_AVX2=0 pip install --no-build-isolation -e .");
    return nullptr;
  }
#endif
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  try {
    namespace py = pybind11;
    auto m = py::reinterpret_borrow<py::module_>(module);
    py::class_<TrainStepCall>(m, "TrainStepCall",
                              "A prepared call of an mlp_train_step op (pyops/train_step.py's cached plan).")
        .def(py::init<const std::string&, std::vector<at::Tensor>, std::vector<at::Tensor>, const std::vector<bool>&,
                      std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                      std::vector<at::Tensor>, bool, std::optional<at::Tensor>, int64_t, int64_t, double>())
        .def("__call__", &TrainStepCall::operator(), py::call_guard<py::gil_scoped_release>());
    py::class_<AdamStepCall>(m, "AdamStepCall",
                             "A prepared call of an adam_step op for one bucket of pyops.optim.Adam's cached plan.")
        .def(py::init<const std::string&, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                      std::vector<at::Tensor>, std::vector<at::Tensor>>())
        .def("__call__", &AdamStepCall::operator(), py::call_guard<py::gil_scoped_release>())
        .def("with_param_grads", &AdamStepCall::with_param_grads,
             "The call with each param's own .grad; False (nothing done) when a param has none.");
  } catch (pybind11::error_already_set& e) {
    e.restore();
    Py_DECREF(module);
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ImportError, e.what());
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
