"""nipype interface writing the participant report ``sub-<label>.html`` from a subject's derivatives."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["ParticipantReport"]


class _ReportInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc="root of the derivative dataset (OUT_DIR)")
    subject = traits.Str(mandatory=True, desc="participant label (with or without sub-)")
    in_files = InputMultiObject(File(exists=True), mandatory=True,
                                desc="the subject's derivative files (spectrograms, targets, masks, predictions)")
    config = traits.Dict(desc="preprocessing settings (for the methods paragraph)")
    model = traits.Str(desc="name of the model that made the predictions")


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="OUT_DIR/sub-<label>.html")


class ParticipantReport(SimpleInterface):
    """Write ``sub-<label>.html`` (:func:`spec2vol_bids.reports.participant.participant_report`) from the
    derivative files of one subject, grouped by run. Like the sink, it always runs."""

    input_spec = _ReportInputSpec
    output_spec = _ReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from ..io.derivatives import run_derivatives
        from ..pipeline.report_data import run_report_from_files
        from ..reports.participant import participant_report
        from ..utils import versions

        runs = [run_report_from_files(r["spectrogram"], target=r.get("target"), mask=r.get("mask"),
                                      prediction=r.get("prediction")) for r in run_derivatives(self.inputs.in_files)]
        path = participant_report(
            self.inputs.base_directory, self.inputs.subject, runs,
            config=self.inputs.config if isdefined(self.inputs.config) else None, versions=versions(),
            model=self.inputs.model if isdefined(self.inputs.model) else None)
        self._results["out_report"] = str(path)
        return runtime
