# spec2vol-bids BIDS-App image.
#
#   CPU (default):  docker build -t spec2vol-bids .
#   CUDA:           docker build -t spec2vol-bids:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04 \
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#                     --build-arg EXTRAS=cuda .
#
#   docker run --rm -u "$(id -u):$(id -g)" --network none \
#     -v /data/bids:/data:ro -v /data/out:/out -v /data/work:/work \
#     spec2vol-bids /data /out participant -w /work
#   (GPU: add --gpus all and --device cuda; Apptainer: apptainer run --nv ...)
#
# The image needs no network at run time: every dependency (including the BIDS validator) is installed at build
# time, and the matplotlib font cache is built here. It runs as any UID: HOME is world-writable (chmod go=u).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=""
ARG BIDS_VALIDATOR_VERSION=3.0.2
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A CUDA base image has no Python: install the distribution's (the python image already has one).
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
        build-essential git && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md LICENSE /src/
COPY docker /src/docker
COPY spec2vol_bids /src/spec2vol_bids
COPY napari_spec2vol /src/napari_spec2vol
# Optional build inputs in docker/ (see docker/README.md; `make docker-test` fills them): a torch wheel in
# docker/wheels/ is installed instead of downloading one (its dependencies still come from the index), and docker/certs/ca-certificates.crt is the CA bundle
# pip trusts (a site's TLS proxy). They stay in the build stage: the image only receives /opt/venv.
# torch first, from the index of the wanted build (CPU wheels are ~200 MB instead of several GB); then the
# project itself from /src (a local path: DL3013 cannot apply) with its pinned validator.
# hadolint ignore=DL3013
RUN if [ -f /src/docker/certs/ca-certificates.crt ]; then export PIP_CERT=/src/docker/certs/ca-certificates.crt; fi \
 && if ls /src/docker/wheels/torch-"${TORCH_VERSION}"*.whl >/dev/null 2>&1; then \
      pip install --no-cache-dir --find-links /src/docker/wheels "torch==${TORCH_VERSION}"; \
    else pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"; fi \
 && if [ -n "${EXTRAS}" ]; then spec="/src[${EXTRAS}]"; else spec="/src"; fi \
 && pip install --no-cache-dir "${spec}" "bids-validator-deno==${BIDS_VALIDATOR_VERSION}" \
 && python -c "import spec2vol_bids, nipype, mne, bids, nibabel, h5py, torch; print(spec2vol_bids.__version__)"

# ---------------------------------------------------------------------------------------------------- run
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG BUILD_DATE
ARG VCS_REF
ARG VERSION
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --create-home --shell /bin/bash --uid 1000 spec2vol \
 && chmod go=u /home/spec2vol
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/spec2vol \
    MPLCONFIGDIR=/home/spec2vol/.config/matplotlib \
    MPLBACKEND=Agg \
    NIPYPE_NO_ET=1 \
    IS_DOCKER_SPEC2VOL=1 \
    SPEC2VOL_DOCKER_TAG=spec2vol-bids:${VERSION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Offline at run time: build matplotlib's font cache now; record the version where BIDS-Apps look for it.
RUN python -c "import matplotlib.pyplot" \
 && python -c "import spec2vol_bids; print(spec2vol_bids.__version__)" > /version \
 && chmod -R go=u /home/spec2vol
WORKDIR /tmp
LABEL org.opencontainers.image.title="spec2vol-bids" \
      org.opencontainers.image.description="Spec2VolCAMU-Net EEG-to-fMRI BIDS-App (nipype workflows, napari plugin)" \
      org.opencontainers.image.url="https://github.com/spec2vol-bids/spec2vol-bids" \
      org.opencontainers.image.source="https://github.com/spec2vol-bids/spec2vol-bids" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VERSION}"
ENTRYPOINT ["spec2vol_bids"]
CMD ["--help"]
