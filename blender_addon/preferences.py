"""Add-on preferences: which engine to use (a local one started on demand, or a remote one with CURVE keys),
the model cache folder and the device."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from .jobs import EngineOptions

DEVICES = [
    ("auto", "Auto", "CUDA when the engine has a GPU, else CPU"),
    ("cpu", "CPU", "Run on the CPU"),
    ("cuda", "CUDA", "NVIDIA GPU"),
    ("mps", "Apple GPU", "Apple Metal (MPS)"),
]


class SPLATBRUSH_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_mode: EnumProperty(
        name="Engine",
        items=[
            ("LOCAL", "Local", "An engine on this computer, started on demand"),
            ("REMOTE", "Remote", "An engine on another computer (CURVE-encrypted)"),
        ],
        default="LOCAL",
    )
    local_address: StringProperty(
        name="Address", default="tcp://127.0.0.1:5557", description="Loopback address of the local engine"
    )
    auto_start: BoolProperty(
        name="Start a local engine",
        default=True,
        description="Start `<python> -m engine serve` when no engine answers at the local address",
    )
    python_path: StringProperty(
        name="Engine Python",
        subtype="FILE_PATH",
        default="",
        description="Python interpreter with Splatbrush installed (e.g. <project>/.venv/bin/python)",
    )
    remote_address: StringProperty(name="Address", default="tcp://gpu-box:5557", description="Remote engine")
    server_public_key: StringProperty(
        name="Server key",
        default="",
        description="The engine's CURVE public key: 40 z85 characters or its .key file",
    )
    client_keys: StringProperty(
        name="Client keys",
        subtype="FILE_PATH",
        default="",
        description="This client's .key_secret file (`splatbrush keys generate --name client`)",
    )
    model_cache: StringProperty(
        name="Model cache",
        subtype="DIR_PATH",
        default="",
        description="Where a started engine keeps model weights (HF_HOME); empty: its default",
    )
    state_dir: StringProperty(
        name="Job folder",
        subtype="DIR_PATH",
        default="",
        description="Where a started engine keeps its jobs (--state-dir); empty: its default",
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    start_timeout: FloatProperty(name="Start timeout", default=120.0, min=5.0, max=3600.0, subtype="TIME")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_mode", expand=True)
        box = layout.box()
        if self.engine_mode == "LOCAL":
            box.prop(self, "local_address")
            box.prop(self, "auto_start")
            row = box.row()
            row.enabled = self.auto_start
            row.prop(self, "python_path")
            box.prop(self, "model_cache")
            box.prop(self, "state_dir")
            box.prop(self, "start_timeout")
        else:
            box.prop(self, "remote_address")
            box.prop(self, "server_public_key")
            box.prop(self, "client_keys")
        layout.prop(self, "device")

    def engine_options(self) -> EngineOptions:
        local = self.engine_mode == "LOCAL"
        return EngineOptions(
            address=(self.local_address if local else self.remote_address).strip(),
            auto_start=local and self.auto_start,
            python=bpy.path.abspath(self.python_path) if self.python_path else "",
            server_public_key="" if local else self.server_public_key,
            client_keys="" if local else bpy.path.abspath(self.client_keys) if self.client_keys else "",
            model_cache=bpy.path.abspath(self.model_cache) if self.model_cache else "",
            state_dir=bpy.path.abspath(self.state_dir) if self.state_dir else "",
            start_timeout=self.start_timeout,
        )


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    if addon is None:
        raise RuntimeError(f"the add-on {__package__} is not enabled")
    return addon.preferences


classes = (SPLATBRUSH_AP_preferences,)
