"""Copy a run's derivatives from the working directory into the output dataset (DerivativesDataSink-like)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

__all__ = ["DerivativesDataSink"]


class _SinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc="root of the derivative dataset (OUT_DIR)")
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="files already named sub-X/[ses-Y/]<datatype>/<derivative name>")


class _SinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the files written in the output dataset")


class DerivativesDataSink(SimpleInterface):
    """Place a run's derivative files into ``base_directory``, each atomically, sidecars before data files.

    The files come from the nodes of one run; connecting all of them to one sink means a run's derivatives
    appear only when every step of the run succeeded (a failed node leaves no partial run behind). Like
    niworkflows' sink, this node always runs, so an output folder deleted after a cached run is refilled.
    """

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from ..io.names import relative_derivative_path
        from ..utils import copy_atomic

        files = [Path(f) for f in self.inputs.in_files]
        # JSON sidecars first: whoever sees a data file also finds its sidecar.
        files.sort(key=lambda p: (p.suffix != ".json", str(p)))
        out = []
        for src in files:
            dest = Path(self.inputs.base_directory) / relative_derivative_path(src)
            copy_atomic(src, dest)
            out.append(str(dest))
        self._results["out_files"] = out
        return runtime
