"""nipype interfaces for EEG recorded in the scanner: gradient correction, pulse (BCG) correction and their QC.

Thin adapters over :mod:`spec2vol_bids.pipeline.artefacts`: each writes into the node's working directory (the
corrected recording as BrainVision and a QC JSON) for the spectrogram node, which reads the corrected samples
and puts the QC numbers into the spectrogram's sidecar.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["GradientCorrection", "GradientBCGCorrection", "BCGCorrection", "ArtefactQC"]


def _opt(value):
    return value if isdefined(value) else None


def _stem(path) -> str:
    from ..io.names import run_entities

    ents = run_entities(path)
    return "_".join(f"{k}-{v}" for k, v in ents.items()) or "eeg"


class _RunInputSpec(BaseInterfaceInputSpec):
    eeg_file = File(exists=True, mandatory=True, desc="EEG recording of the run (.vhdr, .edf, .bdf, .set)")
    bold_file = File(exists=True, mandatory=True, desc="the paired BOLD series (its number of volumes)")
    repetition_time = traits.Float(mandatory=True, desc="RepetitionTime of the BOLD series (s)")
    channels_tsv = File(exists=True, desc="the run's channels.tsv (channel types: EEG, ECG, ...)")
    events_tsv = File(exists=True, desc="the run's events.tsv (markers when the recording has none)")
    config = traits.Dict(desc="preprocessing settings (PreprocConfig.to_dict()); the correction section is used")
    progress = traits.Bool(False, usedefault=True, nohash=True, desc="show a progress bar")


class _GradientInputSpec(_RunInputSpec):
    cardiac_qc = traits.Bool(True, usedefault=True,
                             desc="measure the heartbeat-locked average of the output (off when the BCG step follows)")


class _GradientOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the corrected recording (BrainVision .vhdr, float32 microvolts)")
    qc_file = File(exists=True, desc="QC JSON: power at the artefact harmonics before and after, per channel")
    ecg_file = File(desc="the corrected ECG channel (.npy), when the recording has one")


class GradientCorrection(SimpleInterface):
    """Average artefact subtraction of the MR gradient artefact, sub-sample aligned, then a low-pass
    (:func:`spec2vol_bids.pipeline.artefacts.correct_gradient`)."""

    input_spec = _GradientInputSpec
    output_spec = _GradientOutputSpec

    def _run_interface(self, runtime):
        from ..bids.bold import load_bold_header
        from ..pipeline.artefacts import correct_gradient

        cwd = Path(runtime.cwd)
        stem = _stem(self.inputs.eeg_file)
        paths = correct_gradient(
            self.inputs.eeg_file, out_file=cwd / f"{stem}_desc-gradient_eeg.vhdr", qc_file=cwd / "qc_gradient.json",
            ecg_file=cwd / "ecg.npy", n_volumes=int(load_bold_header(self.inputs.bold_file).shape[3]),
            repetition_time=self.inputs.repetition_time, config=_opt(self.inputs.config),
            channels_tsv=_opt(self.inputs.channels_tsv), events_tsv=_opt(self.inputs.events_tsv),
            cardiac_qc=self.inputs.cardiac_qc, progress=self.inputs.progress)
        self._results.update({k: str(v) for k, v in paths.items()})
        return runtime


class _GradientBCGOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the corrected recording (BrainVision .vhdr, float32 microvolts)")
    qc_file = File(exists=True, desc="QC JSON of the gradient correction (as GradientCorrection's)")
    bcg_qc_file = File(exists=True, desc="QC JSON of the pulse correction (as BCGCorrection's)")


class GradientBCGCorrection(SimpleInterface):
    """Both corrections in one go: the gradient artefact, then the pulse artefact at the R peaks of the ECG,
    writing the recording once (:func:`spec2vol_bids.pipeline.artefacts.correct_gradient_bcg`)."""

    input_spec = _RunInputSpec
    output_spec = _GradientBCGOutputSpec

    def _run_interface(self, runtime):
        from ..bids.bold import load_bold_header
        from ..pipeline.artefacts import correct_gradient_bcg

        cwd = Path(runtime.cwd)
        paths = correct_gradient_bcg(
            self.inputs.eeg_file, out_file=cwd / f"{_stem(self.inputs.eeg_file)}_desc-bcg_eeg.vhdr",
            qc_file=cwd / "qc_gradient.json", bcg_qc_file=cwd / "qc_bcg.json",
            n_volumes=int(load_bold_header(self.inputs.bold_file).shape[3]),
            repetition_time=self.inputs.repetition_time, config=_opt(self.inputs.config),
            channels_tsv=_opt(self.inputs.channels_tsv), events_tsv=_opt(self.inputs.events_tsv),
            progress=self.inputs.progress)
        self._results.update({k: str(v) for k, v in paths.items()})
        return runtime


class _BCGInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="recording free of gradient artefact (.vhdr)")
    channels_tsv = File(exists=True, desc="the run's channels.tsv (which channel is the ECG)")
    ecg_file = File(exists=True, desc="the ECG channel already read (.npy from GradientCorrection)")
    config = traits.Dict(desc="preprocessing settings (PreprocConfig.to_dict()); the correction section is used")
    progress = traits.Bool(False, usedefault=True, nohash=True, desc="show a progress bar")


class _BCGOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the corrected recording (BrainVision .vhdr)")
    qc_file = File(exists=True, desc="QC JSON: power of the R-peak-locked average before and after, per channel")


class BCGCorrection(SimpleInterface):
    """Pulse (BCG) artefact subtraction locked to the R peaks of the ECG
    (:func:`spec2vol_bids.pipeline.artefacts.correct_bcg`)."""

    input_spec = _BCGInputSpec
    output_spec = _BCGOutputSpec

    def _run_interface(self, runtime):
        from ..pipeline.artefacts import correct_bcg

        cwd = Path(runtime.cwd)
        paths = correct_bcg(self.inputs.in_file, out_file=cwd / f"{_stem(self.inputs.in_file)}_desc-bcg_eeg.vhdr",
                            qc_file=cwd / "qc_bcg.json", config=_opt(self.inputs.config),
                            channels_tsv=_opt(self.inputs.channels_tsv), ecg_file=_opt(self.inputs.ecg_file),
                            progress=self.inputs.progress)
        self._results.update({k: str(v) for k, v in paths.items()})
        return runtime


class _QCOutputSpec(TraitedSpec):
    qc_file = File(exists=True, desc="QC JSON: artefact power of the uncorrected recording, per channel")


class ArtefactQC(SimpleInterface):
    """The artefact QC of a recording that is not corrected (:func:`spec2vol_bids.pipeline.artefacts.artefact_qc`)."""

    input_spec = _RunInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        from ..bids.bold import load_bold_header
        from ..pipeline.artefacts import artefact_qc

        path = artefact_qc(self.inputs.eeg_file, qc_file=Path(runtime.cwd) / "qc_artefacts.json",
                           n_volumes=int(load_bold_header(self.inputs.bold_file).shape[3]),
                           repetition_time=self.inputs.repetition_time, config=_opt(self.inputs.config),
                           channels_tsv=_opt(self.inputs.channels_tsv), events_tsv=_opt(self.inputs.events_tsv),
                           progress=self.inputs.progress)
        self._results["qc_file"] = str(path)
        return runtime
