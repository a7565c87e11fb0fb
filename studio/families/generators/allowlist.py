"""The reviewed allowlist of TorchScript operators a generator file may use (`torchscript.py` checks every compiled
function of a module against it before the module is called).

A TorchScript file is a program: besides tensor arithmetic, TorchScript can call operators that read and write files
(`aten::from_file`, `aten::save`), re-point a tensor at raw storage (`aten::set_`), call back into Python, talk to other
processes (rpc, c10d), or run any operator a loaded library registered under its own namespace. So this is an
ALLOWLIST: an operator that is not named here refuses the model, whatever it is. Only the `aten` (tensor operators and
the TorchScript language's own int/float/list/string helpers) and `prim` (control flow and object plumbing)
namespaces can be allowed at all.

How the list was made: typical generators (MLPs; DCGAN-style conv/conv-transpose/norm stacks; a StyleGAN-like mapping
network with modulated, demodulated grouped convolutions, noise buffers and upsampling; Fourier-feature nets; attention
blocks; 1-d sound generators with conv-transpose, PReLU and sines; assertions, loops, list building, string
formatting) were scripted *and* traced, saved, loaded and their inlined graphs' node kinds collected; to that we added
the common neighbours of each op (the other activations, pools, pads, reductions, FFTs a vocoder uses). Every name
was then reviewed against `torch._C._jit_get_all_schemas()`: none takes a file name, a path, a `Storage` or a Python
object (`tests/families/test_generator_allowlist.py` checks this mechanically for every schema of every allowed name,
and that each denied operator below stays refused).

Unknown operators are refused with "is not a reviewed tensor operator"; the reasons below are only for clearer messages
on the operators we know to be dangerous.
"""

from __future__ import annotations

# --- prim: the TorchScript language itself ----------------------------------------------------------------------------
# Constants, control flow (nested blocks are walked), lists/tuples/dicts, attribute reads and writes on the module's own
# objects, objects of TorchScript classes compiled from the same file (their methods are compiled into the file and
# checked like any other function; `Enter`/`Exit` run a `with` object's __enter__/__exit__, also checked), exceptions,
# Optional plumbing and queries of a tensor's metadata. None of them touches anything outside the interpreter.
PRIM = frozenset({
    "prim::Constant", "prim::If", "prim::Loop", "prim::GetAttr", "prim::SetAttr", "prim::CreateObject",
    "prim::Enter", "prim::Exit",
    "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct", "prim::TupleUnpack", "prim::TupleIndex",
    "prim::DictConstruct",
    "prim::NumToTensor", "prim::RaiseException", "prim::Uninitialized",
    "prim::unchecked_cast", "prim::unchecked_unwrap_optional", "prim::isinstance", "prim::min", "prim::max",
    "prim::abs", "prim::device", "prim::dtype", "prim::layout", "prim::requires_grad", "prim::is_cuda",
    "prim::is_cpu", "prim::is_nested", "prim::is_sparse", "prim::is_quantized", "prim::is_mkldnn", "prim::is_meta",
    "prim::is_xpu", "prim::is_mps", "prim::type", "prim::data", "prim::tolist", "prim::itemsize", "prim::nbytes",
    "prim::EnumName", "prim::EnumValue",
})

# --- aten: the TorchScript language's helpers on ints, floats, bools, strings, lists and dicts ------------------------
# (`x.shape[2] // 2`, `for layer in self.layers`, `assert ..., f"..."`): pure values in, values out. `aten::warn` only
# issues a warning (F.interpolate and MultiheadAttention use it); `set_grad_enabled` is what a scripted
# `with torch.no_grad()` calls (thread-local, and renders already run without gradients).
LANGUAGE = frozenset({
    "aten::__getitem__", "aten::__is__", "aten::__isnot__", "aten::__not__", "aten::__contains__",
    "aten::__derive_index", "aten::__range_length", "aten::__and__", "aten::__or__", "aten::__xor__",
    "aten::__round_to_zero_floordiv", "aten::_set_item", "aten::append", "aten::extend", "aten::insert",
    "aten::pop", "aten::len", "aten::list", "aten::copy", "aten::reverse", "aten::sorted", "aten::count",
    "aten::index", "aten::keys", "aten::values", "aten::items", "aten::get", "aten::setdefault", "aten::dict",
    "aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit", "aten::IntImplicit", "aten::FloatImplicit",
    "aten::format", "aten::str", "aten::join", "aten::startswith", "aten::endswith", "aten::lower", "aten::upper",
    "aten::strip", "aten::warn", "aten::floordiv", "aten::divmod", "aten::modf", "aten::gcd", "aten::factorial",
    "aten::dim", "aten::size", "aten::sym_size", "aten::numel", "aten::sym_numel", "aten::item", "aten::stride",
    "aten::is_floating_point", "aten::is_complex", "aten::is_contiguous", "aten::is_grad_enabled",
    "aten::is_autocast_enabled", "aten::is_autocast_cpu_enabled", "aten::set_grad_enabled", "aten::device",
    "aten::get_device", "aten::element_size", "aten::isnan", "aten::isinf", "aten::isfinite",
})

# --- aten: making tensors ---------------------------------------------------------------------------------------------
# From shapes and numbers only (no storage, no file, no pointer). The random ones use the process's generator, as a
# StyleGAN noise input does; `empty*` hand back uninitialised memory of this process, never anything outside it.
CREATE = frozenset({
    "aten::tensor", "aten::scalar_tensor", "aten::as_tensor", "aten::zeros", "aten::ones", "aten::full",
    "aten::empty", "aten::zeros_like", "aten::ones_like", "aten::full_like", "aten::empty_like", "aten::new_zeros",
    "aten::new_ones", "aten::new_full", "aten::new_empty", "aten::arange", "aten::linspace", "aten::logspace",
    "aten::eye", "aten::randn", "aten::rand", "aten::randn_like", "aten::rand_like", "aten::normal", "aten::normal_",
    "aten::uniform_", "aten::randint", "aten::randint_like", "aten::bernoulli",
    "aten::hann_window", "aten::hamming_window", "aten::blackman_window", "aten::meshgrid", "aten::clone",
    "aten::detach", "aten::to", "aten::type_as", "aten::contiguous", "aten::copy_", "aten::fill_", "aten::zero_",
    "aten::requires_grad_", "aten::cpu",
    
})

# --- aten: shapes, views, indexing, joining ---------------------------------------------------------------------------
# Every index is bounds-checked by these operators (the `_unsafe_*` variants that skip the check are NOT here, nor is
# `as_strided`, which re-reads a storage at chosen offsets).
SHAPE = frozenset({
    "aten::view", "aten::view_as", "aten::reshape", "aten::reshape_as", "aten::flatten", "aten::unflatten",
    "aten::squeeze", "aten::squeeze_", "aten::unsqueeze", "aten::unsqueeze_", "aten::permute", "aten::transpose",
    "aten::t", "aten::movedim", "aten::moveaxis", "aten::swapaxes", "aten::swapdims", "aten::expand",
    "aten::expand_as", "aten::broadcast_to", "aten::broadcast_tensors", "aten::repeat", "aten::repeat_interleave",
    "aten::tile", "aten::cat", "aten::concat", "aten::concatenate", "aten::stack", "aten::hstack", "aten::vstack",
    "aten::dstack", "aten::chunk", "aten::split", "aten::split_with_sizes", "aten::tensor_split", "aten::unbind",
    "aten::narrow", "aten::select", "aten::slice", "aten::index_select", "aten::gather", "aten::scatter",
    "aten::scatter_add", "aten::index_put", "aten::index_put_", "aten::masked_fill", "aten::masked_fill_",
    "aten::masked_select", "aten::masked_scatter", "aten::where", "aten::nonzero", "aten::flip", "aten::fliplr",
    "aten::flipud", "aten::roll", "aten::rot90", "aten::unfold",
    "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::channel_shuffle", "aten::pad", "aten::constant_pad_nd",
    "aten::reflection_pad1d", "aten::reflection_pad2d", "aten::reflection_pad3d", "aten::replication_pad1d",
    "aten::replication_pad2d", "aten::replication_pad3d", "aten::_pad_circular", "aten::tril", "aten::triu",
    "aten::diag", "aten::diagonal", "aten::diag_embed", "aten::view_as_real", "aten::view_as_complex",
    "aten::real", "aten::imag", "aten::complex", "aten::polar", "aten::angle", "aten::sort", "aten::argsort",
    "aten::topk", "aten::kthvalue",
})

# --- aten: arithmetic, math, comparisons, reductions, linear algebra --------------------------------------------------
MATH = frozenset({
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub", "aten::mul", "aten::mul_", "aten::div",
    "aten::div_", "aten::true_divide", "aten::neg", "aten::neg_", "aten::pow", "aten::pow_", "aten::float_power",
    "aten::reciprocal", "aten::sqrt", "aten::rsqrt", "aten::square", "aten::exp", "aten::exp_", "aten::exp2",
    "aten::expm1", "aten::log", "aten::log2", "aten::log10", "aten::log1p", "aten::sin", "aten::cos", "aten::tan",
    "aten::asin", "aten::acos", "aten::atan", "aten::atan2", "aten::sinh", "aten::cosh", "aten::tanh",
    "aten::tanh_", "aten::asinh", "aten::acosh", "aten::atanh", "aten::sinc", "aten::erf", "aten::erfc",
    "aten::erfinv", "aten::lgamma", "aten::digamma", "aten::abs", "aten::abs_", "aten::sign", "aten::sgn",
    "aten::floor", "aten::ceil", "aten::round", "aten::trunc", "aten::frac", "aten::clamp", "aten::clamp_",
    "aten::clamp_min", "aten::clamp_min_", "aten::clamp_max", "aten::clamp_max_", "aten::clip", "aten::maximum",
    "aten::minimum", "aten::fmax", "aten::fmin", "aten::fmod", "aten::remainder", "aten::floor_divide",
    "aten::lerp", "aten::lerp_", "aten::addcmul", "aten::addcdiv", "aten::hypot", "aten::logit", "aten::xlogy",
    "aten::logaddexp", "aten::nan_to_num", "aten::copysign", "aten::heaviside",
    "aten::eq", "aten::ne", "aten::lt", "aten::le", "aten::gt", "aten::ge", "aten::equal", "aten::isclose",
    "aten::allclose", "aten::logical_and", "aten::logical_or", "aten::logical_not", "aten::logical_xor",
    "aten::bitwise_and", "aten::bitwise_or", "aten::bitwise_not", "aten::bitwise_xor",
    "aten::sum", "aten::nansum", "aten::mean", "aten::nanmean", "aten::std", "aten::var", "aten::std_mean",
    "aten::var_mean", "aten::prod", "aten::norm", "aten::linalg_vector_norm", "aten::linalg_norm",
    "aten::frobenius_norm", "aten::amax", "aten::amin", "aten::aminmax", "aten::max", "aten::min", "aten::argmax",
    "aten::argmin", "aten::median", "aten::cumsum", "aten::cumprod", "aten::cummax", "aten::cummin",
    "aten::logsumexp", "aten::logcumsumexp", "aten::all", "aten::any", "aten::count_nonzero",
    "aten::mm", "aten::bmm", "aten::matmul", "aten::mv", "aten::dot", "aten::vdot", "aten::outer", "aten::addmm",
    "aten::addmv", "aten::baddbmm", "aten::addbmm", "aten::einsum", "aten::tensordot",
    "aten::cdist", "aten::cross", "aten::linalg_cross", "aten::cosine_similarity", "aten::pairwise_distance",
    
    "aten::trace",
})

# --- aten: network layers, activations, norms, pools, resampling, attention, spectra ----------------------------------
# `_convolution` is what a traced convolution records; `_native_multi_head_attention` what nn.MultiheadAttention's
# fast path calls; `_upsample_*` are F.interpolate's anti-aliased and exact-nearest modes (all plain kernels); the
# recurrent layers take their weights as a list of tensors.
NN = frozenset({
    "aten::linear", "aten::bilinear", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::conv_transpose1d",
    "aten::conv_transpose2d", "aten::conv_transpose3d", "aten::convolution", "aten::_convolution",
    "aten::batch_norm", "aten::instance_norm", "aten::group_norm", "aten::layer_norm", "aten::rms_norm",
    "aten::embedding", "aten::one_hot",
    "aten::relu", "aten::relu_", "aten::relu6", "aten::relu6_", "aten::leaky_relu", "aten::leaky_relu_",
    "aten::prelu", "aten::rrelu", "aten::elu", "aten::elu_", "aten::selu", "aten::selu_", "aten::celu",
    "aten::celu_", "aten::gelu", "aten::gelu_", "aten::silu", "aten::silu_", "aten::mish", "aten::mish_",
    "aten::softplus", "aten::softshrink", "aten::hardshrink", "aten::hardtanh",
    "aten::hardtanh_", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::hardswish", "aten::hardswish_",
    "aten::sigmoid", "aten::sigmoid_", "aten::log_sigmoid", "aten::glu", "aten::threshold", "aten::threshold_",
    "aten::softmax", "aten::log_softmax", "aten::dropout", "aten::dropout_", "aten::feature_dropout",
    "aten::alpha_dropout", "aten::feature_alpha_dropout",
    "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::avg_pool1d", "aten::avg_pool2d",
    "aten::avg_pool3d", "aten::adaptive_avg_pool1d", "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d",
    "aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d",
    "aten::upsample_nearest1d", "aten::upsample_nearest2d", "aten::upsample_nearest3d", "aten::upsample_linear1d",
    "aten::upsample_bilinear2d", "aten::upsample_bicubic2d", "aten::upsample_trilinear3d",
    "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d", "aten::_upsample_nearest_exact3d",
    "aten::_upsample_bilinear2d_aa", "aten::_upsample_bicubic2d_aa", "aten::_upsample_lanczos2d_aa",
    "aten::grid_sampler", "aten::affine_grid_generator", "aten::scaled_dot_product_attention",
    "aten::_native_multi_head_attention", "aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu",
    "aten::lstm_cell", "aten::gru_cell", "aten::stft", "aten::istft", "aten::fft_fft", "aten::fft_ifft",
    "aten::fft_rfft", "aten::fft_irfft", "aten::fft_fft2", "aten::fft_ifft2", "aten::fft_rfft2",
    "aten::fft_irfft2", "aten::fft_fftn", "aten::fft_ifftn", "aten::fft_rfftn", "aten::fft_irfftn",
    "aten::fft_fftshift", "aten::fft_ifftshift", "aten::fft_fftfreq", "aten::fft_rfftfreq",
})

ALLOWED: frozenset[str] = PRIM | LANGUAGE | CREATE | SHAPE | MATH | NN

NAMESPACES = ("aten", "prim")

# Operators we know to be dangerous, with the reason a refusal gives. They are refused because they are not in ALLOWED
# (a test keeps it so); this table only words the message.
FILES = "reads or writes files"
PYTHON = "calls into Python"
MEMORY = "points a tensor at raw memory or storage"
PROCESS = "talks to other processes or the network"
STATE = "changes the process's global state"
ASYNC = "runs work on other threads"
OUTPUT = "writes to the console or the profiler"
DENIED: dict[str, str] = {
    "aten::from_file": FILES, "aten::save": FILES, "debugprims::load_tensor": FILES,
    "prim::PythonOp": PYTHON, "prim::IgnoredPythonOp": PYTHON, "prim::CallFunction": PYTHON,
    "prim::CallMethod": "calls a method that could not be inlined (an interface or a custom C++ class)",
    "aten::set_": MEMORY, "aten::set": MEMORY, "aten::set_data": MEMORY, "aten::as_strided": MEMORY,
    "aten::as_strided_": MEMORY, "aten::as_strided_scatter": MEMORY, "aten::_unsafe_index": MEMORY,
    "aten::_unsafe_index_put": MEMORY, "aten::_unsafe_masked_index": MEMORY,
    "aten::_unsafe_masked_index_put_accumulate": MEMORY, "aten::_nested_view_from_buffer": MEMORY,
    "aten::empty_strided": MEMORY, "aten::new_empty_strided": MEMORY, "aten::pin_memory": MEMORY,
    "aten::_pin_memory": MEMORY, "aten::record_stream": MEMORY,
    "prim::rpc_async": PROCESS, "prim::rpc_sync": PROCESS, "prim::rpc_remote": PROCESS,
    "aten::manual_seed": STATE, "aten::seed": STATE, "aten::_cufft_set_plan_cache_max_size": STATE,
    "prim::fork": ASYNC, "aten::wait": ASYNC, "prim::awaitable": ASYNC, "prim::awaitable_wait": ASYNC,
    "prim::awaitable_nowait": ASYNC,
    "prim::Print": OUTPUT, "aten::_print": OUTPUT, "prim::TimePoint": OUTPUT, "prim::AddStatValue": OUTPUT,
    "prim::id": "reads an object's memory address",
}
DENIED_NAMESPACES: dict[str, str] = {
    "c10d": PROCESS, "_c10d_functional": PROCESS, "_c10d_functional_autograd": PROCESS, "symm_mem": PROCESS,
    "_dtensor": PROCESS, "profiler": OUTPUT, "debugprims": FILES,
}


def refusal(kind: str) -> str | None:
    """None when the node kind `kind` ("aten::add") is allowed, else why it is refused, in words."""
    if kind in ALLOWED:
        return None
    if kind in DENIED:
        return DENIED[kind]
    namespace = kind.split("::", 1)[0] if "::" in kind else ""
    if namespace not in NAMESPACES:
        reason = DENIED_NAMESPACES.get(namespace)
        if reason:
            return reason
        return f"is from the operator namespace {namespace!r} (a library's own or custom operators)"
    return "is not a reviewed tensor operator"
