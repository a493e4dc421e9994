"""The option objects the workflows take: what the flags asked for, parsed, with no flag in sight.

The CLI builds them (`kubectl_capc.cli.options`); tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kubectl_capc.domain.errors import UsageError
from kubectl_capc.domain.plan import ImageSource, WaitRollout

if TYPE_CHECKING:
    from kubectl_capc.cloudstack.upload import UploadTLS

__all__ = ["ApplyOptions", "ImageOptions", "Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds each phase may take; None waits without limit. Defaults follow EKS Anywhere's."""

    images: float | None = 60 * 60
    control_plane: float | None = 60 * 60
    machine_deployment: float | None = 30 * 60

    def for_wait(self, step: WaitRollout) -> float | None:
        return self.control_plane if step.is_control_plane else self.machine_deployment


@dataclass(frozen=True)
class ApplyOptions:
    dry_run: bool = False
    yes: bool = False
    no_wait: bool = False
    interactive: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    break_lock: bool = False
    """Take the cluster's upgrade lock even from a live holder (`--break-lock`)."""


@dataclass(frozen=True)
class ImageOptions:
    """How missing CloudStack templates are obtained (`--image-source` and its companions)."""

    source: ImageSource = ImageSource.EXISTING
    url: str | None = None
    prebuilt_base_url: str | None = None
    image_builder_dir: Path | None = None
    cache_dir: Path | None = None
    upload_ca_file: Path | None = None
    """CA that signed the secondary-storage VM's certificate, for uploads (`--upload-ca-file`)."""
    upload_insecure: bool = False
    """Uploads skip checking the secondary-storage VM's certificate (`--upload-insecure`)."""

    def upload_tls(self) -> UploadTLS:
        """The TLS settings of uploads to the secondary-storage VM, from the two flags above."""
        from kubectl_capc.cloudstack.upload import UploadTLS

        return UploadTLS(self.upload_ca_file, self.upload_insecure)

    def builder_dir(self) -> Path:
        """The image-builder checkout that `--image-source build` needs; refused when not given."""
        if self.image_builder_dir is None:
            raise UsageError(
                "--image-source build needs --image-builder-dir DIR",
                hint="give a kubernetes-sigs/image-builder checkout (its images/capi directory is used), "
                "or use another --image-source",
            )
        return self.image_builder_dir
