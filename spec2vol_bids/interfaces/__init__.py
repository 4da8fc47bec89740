"""Thin nipype interfaces over the functions of :mod:`spec2vol_bids.pipeline` and the report builders.

Each interface does one step of one run and writes its result into the node's working directory under the
final derivative name; :class:`~spec2vol_bids.interfaces.bids.DerivativesDataSink` then copies the files of a
run into the output dataset, atomically, once every step of the run has succeeded.

========================================  ==============================================================
interface                                 wraps
========================================  ==============================================================
:class:`.preproc.EEGSpectrogram`          :func:`spec2vol_bids.pipeline.steps.compute_spectrogram`
:class:`.artefacts.GradientCorrection`    :func:`spec2vol_bids.pipeline.artefacts.correct_gradient`
:class:`.artefacts.GradientBCGCorrection` :func:`spec2vol_bids.pipeline.artefacts.correct_gradient_bcg`
:class:`.artefacts.BCGCorrection`         :func:`spec2vol_bids.pipeline.artefacts.correct_bcg`
:class:`.artefacts.ArtefactQC`            :func:`spec2vol_bids.pipeline.artefacts.artefact_qc`
:class:`.preproc.BOLDTarget`              :func:`spec2vol_bids.pipeline.steps.compute_target`
:class:`.model.Predict`                   :func:`spec2vol_bids.pipeline.steps.predict_run`
:class:`.bids.DerivativesDataSink`        :func:`spec2vol_bids.utils.copy_atomic`
:class:`.reports.ParticipantReport`       :func:`spec2vol_bids.reports.participant.participant_report`
========================================  ==============================================================
"""

from .artefacts import ArtefactQC, BCGCorrection, GradientBCGCorrection, GradientCorrection
from .bids import DerivativesDataSink
from .model import Predict
from .preproc import BOLDTarget, EEGSpectrogram
from .reports import ParticipantReport

__all__ = ["EEGSpectrogram", "BOLDTarget", "Predict", "DerivativesDataSink", "ParticipantReport",
           "GradientCorrection", "GradientBCGCorrection", "BCGCorrection", "ArtefactQC"]
