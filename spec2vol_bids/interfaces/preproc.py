"""nipype interfaces for the per-run preprocessing: EEG spectrogram and BOLD target."""

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

__all__ = ["EEGSpectrogram", "BOLDTarget"]


def _opt(value):
    return value if isdefined(value) else None


class _EEGSpectrogramInputSpec(BaseInterfaceInputSpec):
    eeg_file = File(exists=True, mandatory=True, desc="raw EEG data file of the run (.vhdr, .edf, .bdf, .set)")
    bold_file = File(exists=True, mandatory=True,
                     desc="the paired BOLD series (its header gives the number of volumes; listed in Sources)")
    repetition_time = traits.Float(mandatory=True, desc="RepetitionTime of the BOLD series (s)")
    channels_tsv = File(exists=True, desc="the run's channels.tsv (channel types)")
    events_tsv = File(exists=True, desc="the run's events.tsv (volume markers if the raw file has none)")
    config = traits.Dict(desc="preprocessing settings (PreprocConfig.to_dict()); default: official pipeline")
    progress = traits.Bool(False, usedefault=True, nohash=True, desc="show a progress bar")
    data_file = File(exists=True, desc="the artefact-corrected copy of eeg_file to read the samples from")
    qc_files = InputMultiObject(File(exists=True), desc="artefact QC files of the run (numbers for the sidecar)")
    eeg_dataset = traits.Str(desc="name of the dataset holding eeg_file in BIDS URIs (raw, or the -d NAME)")
    eeg_desc = traits.Str(desc="desc label of a preprocessed eeg_file (recorded in EEGSource)")


class _EEGSpectrogramOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="*_desc-stft_spectrogram.h5")
    out_sidecar = File(exists=True, desc="its JSON sidecar")
    onset_source = traits.Str(desc="markers, events.tsv or tr-fallback")


class EEGSpectrogram(SimpleInterface):
    """Volume-locked spectrogram of one EEG run, written as the spectrogram derivative (HDF5 + JSON).

    Streams the recording window by window (:func:`spec2vol_bids.pipeline.steps.compute_spectrogram`), from
    ``data_file`` (the artefact-corrected copy) when given. The file is written into the node directory under its
    final BIDS name (``sub-X/[ses-Y/]eeg/...``).
    """

    input_spec = _EEGSpectrogramInputSpec
    output_spec = _EEGSpectrogramOutputSpec

    def _run_interface(self, runtime):
        from ..bids.bold import load_bold_header
        from ..io.derivatives import SPECTROGRAM
        from ..io.spectrogram import load_spectrogram
        from ..pipeline.steps import compute_spectrogram

        n_volumes = int(load_bold_header(self.inputs.bold_file).shape[3])
        h5, js = compute_spectrogram(
            self.inputs.eeg_file, n_volumes=n_volumes, repetition_time=self.inputs.repetition_time,
            out_file=SPECTROGRAM.path(runtime.cwd, self.inputs.eeg_file), config=_opt(self.inputs.config),
            channels_tsv=_opt(self.inputs.channels_tsv), events_tsv=_opt(self.inputs.events_tsv),
            bold_file=self.inputs.bold_file, progress=self.inputs.progress, data_file=_opt(self.inputs.data_file),
            qc_files=list(_opt(self.inputs.qc_files) or []), eeg_dataset=_opt(self.inputs.eeg_dataset) or "raw",
            eeg_desc=_opt(self.inputs.eeg_desc) or None)
        self._results["out_file"] = str(h5)
        self._results["out_sidecar"] = str(js)
        self._results["onset_source"] = str(load_spectrogram(h5, data=False).attrs["onset_source"])
        return runtime


class _BOLDTargetInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True,
                     desc="BOLD series [X, Y, Z, T]: raw, or preprocessed (e.g. fMRIPrep's desc-preproc_bold)")
    repetition_time = traits.Float(mandatory=True, desc="RepetitionTime (s)")
    config = traits.Dict(desc="preprocessing settings (PreprocConfig.to_dict()); the bold section is used")
    mask_file = File(exists=True, desc="brain mask on the grid of bold_file (default: computed from the data)")
    dataset = traits.Str("raw", usedefault=True,
                         desc="name of the dataset holding bold_file in the sidecar's BIDS URIs (raw or -d NAME)")
    space = traits.Str(desc="the --bold-space of a preprocessed bold_file (recorded in the sidecar)")


class _BOLDTargetOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="*_desc-target_bold.nii.gz on the model grid")
    out_sidecar = File(exists=True, desc="its JSON sidecar")
    out_mask = File(exists=True, desc="*_desc-brain_mask.nii.gz")
    out_mask_sidecar = File(exists=True, desc="its JSON sidecar")


class BOLDTarget(SimpleInterface):
    """BOLD series resized to the model grid and scaled per volume, plus its brain mask
    (:func:`spec2vol_bids.pipeline.steps.compute_target`)."""

    input_spec = _BOLDTargetInputSpec
    output_spec = _BOLDTargetOutputSpec

    def _run_interface(self, runtime):
        from ..pipeline.steps import compute_target, target_paths

        target, mask = target_paths(runtime.cwd, self.inputs.bold_file, _opt(self.inputs.config))
        t, tj, m, mj = compute_target(self.inputs.bold_file, out_file=target, mask_file=mask,
                                      repetition_time=self.inputs.repetition_time,
                                      config=_opt(self.inputs.config), brain_mask=_opt(self.inputs.mask_file),
                                      dataset=_opt(self.inputs.dataset) or "raw", space=_opt(self.inputs.space))
        self._results.update(out_file=str(t), out_sidecar=str(tj), out_mask=str(m), out_mask_sidecar=str(mj))
        return runtime
