"""Let lleaves 1.0 run on llvmlite >= 0.45, which removed the legacy PassManagerBuilder.

Only the optimisation step is replaced (same -O3 intent, through LLVM's new pass
manager); lleaves' parser, code generator and blocking are untouched, so what is
timed is still lleaves' code. Benchmark-only: nothing outside benchmarks/ imports it.

``finline=False`` keeps its meaning: lleaves' legacy pipeline then ran no inliner at
all, while the new pipeline always inlines a private function called once (every
tree function), so the tree functions are marked ``noinline`` instead. With inlining
(the default), LLVM 22 did not finish optimising the 1000 x 127 model: stopped after
36 min on a quiet machine, and again after 9 CPU-minutes (perf samples: the largest
share in ValueTracking's programUndefinedIfUndefOrPoison and its callers, which scan
the huge block functions that 34 inlined 127-leaf trees make). With ``finline=False``
it compiles in about 1.5 CPU-minutes, so the benchmark uses that for this model only.
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir


def _compile_to_module(file_path: Any, fblocksize: int = 34, finline: bool = True, raw_score: bool = False,
                       froot_func_name: str = "forest_root", use_fp64: bool = True) -> Any:
    from lleaves.compiler.ast import parse_to_ast
    from lleaves.compiler.codegen import gen_forest

    forest = parse_to_ast(file_path)
    forest.raw_score = raw_score
    ir = llvmlite.ir.Module(name="forest")
    gen_forest(forest, ir, fblocksize, froot_func_name, use_fp64)
    if not finline:
        for function in ir.functions:
            if function.linkage == "private":  # lleaves' per-tree functions
                function.attributes.add("noinline")
    ir.triple = llvm.get_process_triple()
    module = llvm.parse_assembly(str(ir))
    module.name = str(file_path)
    module.verify()
    _initialize()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(), reloc="pic", codemodel="large")
    options = llvm.PipelineTuningOptions(speed_level=3)
    builder = llvm.create_pass_builder(machine, options)
    builder.getModulePassManager().run(module, builder)
    return module


def _initialize() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


def patch() -> None:
    """Swap lleaves' optimiser for one that works on this llvmlite (idempotent)."""
    import lleaves.compiler
    import lleaves.lleaves
    import lleaves.llvm_binding

    if not hasattr(llvm, "PassManagerBuilder"):
        lleaves.compiler.compile_to_module = _compile_to_module
        lleaves.lleaves.compiler.compile_to_module = _compile_to_module
        # llvmlite now initialises LLVM itself and raises on the old explicit call.
        lleaves.llvm_binding._initialize_llvm = _initialize
