"""nipype interface for prediction with a trained checkpoint."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

__all__ = ["Predict"]


class _PredictInputSpec(BaseInterfaceInputSpec):
    spectrogram = File(exists=True, mandatory=True, desc="*_desc-stft_spectrogram.h5 of the run")
    target = File(exists=True, mandatory=True, desc="*_desc-target_bold.nii.gz (grid and affine of the output)")
    checkpoint = File(exists=True, mandatory=True, desc="spec2vol-bids checkpoint (changing it re-runs the node)")
    eeg_file = traits.Str(desc="raw EEG file (listed in Sources)")
    bold_file = traits.Str(desc="raw BOLD file (listed in Sources)")
    # Not hashed: the device, the batch size and the GPU flag change how, not what, is computed (as MRIQC's
    # SynthStrip wrapper), so switching CPU <-> GPU keeps the cache.
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="run on a GPU; nipype's MultiProc counts this node against n_gpu_procs")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True, nohash=True, desc="torch device")
    batch_size = traits.Int(8, usedefault=True, nohash=True, desc="pairs per forward pass")
    num_threads = traits.Int(nohash=True, desc="CPU threads for torch (nipype sets it from the node's n_procs)")


class _PredictOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="*_desc-spec2vol_bold.nii.gz")
    out_sidecar = File(exists=True, desc="its JSON sidecar (VolumeIndices, ModelSHA256, Sources)")


class Predict(SimpleInterface):
    """Predict a run's BOLD volumes from its spectrogram (:func:`spec2vol_bids.pipeline.steps.predict_run`).

    The checkpoint must match the data (channels, frequency axis, grid); a mismatch raises
    :class:`~spec2vol_bids.errors.DataError`.
    """

    input_spec = _PredictInputSpec
    output_spec = _PredictOutputSpec

    def _run_interface(self, runtime):
        from ..io.derivatives import PREDICTION
        from ..pipeline.steps import predict_run

        device = self.inputs.device
        if device == "auto" and self.inputs.use_gpu:
            device = "cuda"
        if isdefined(self.inputs.num_threads) and self.inputs.num_threads > 0:
            import torch

            torch.set_num_threads(int(self.inputs.num_threads))
        out = PREDICTION.path(runtime.cwd, self.inputs.target)  # the target's run, space and grid
        nii, js = predict_run(
            self.inputs.spectrogram, self.inputs.target, self.inputs.checkpoint, out_file=out, device=device,
            batch_size=self.inputs.batch_size,
            eeg_file=self.inputs.eeg_file if isdefined(self.inputs.eeg_file) else None,
            bold_file=self.inputs.bold_file if isdefined(self.inputs.bold_file) else None)
        self._results.update(out_file=str(nii), out_sidecar=str(js))
        return runtime
