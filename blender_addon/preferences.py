"""Add-on preferences: which engine to use (a local one started on demand, or a remote one with CURVE keys),
the model cache folder and the device.

Blender forgets an add-on's preferences when it is disabled; these are also kept in
`<Blender config>/splatbrush_preferences.json` (written on every change) and restored on enable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from .engine_setup import EngineOptions, validate_address

PREFS_FILE = "splatbrush_preferences.json"
_restoring = False


def _on_change(self, context) -> None:
    if not _restoring:
        save_preferences(self)


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
        update=_on_change,
    )
    local_address: StringProperty(
        name="Address",
        default="tcp://127.0.0.1:5557",
        description="Loopback address of the local engine (tcp://127.0.0.1:PORT)",
        update=_on_change,
    )
    auto_start: BoolProperty(
        name="Start a local engine",
        default=True,
        description="Start `<python> -m engine serve` when no engine answers at the local address",
        update=_on_change,
    )
    python_path: StringProperty(
        name="Engine Python",
        subtype="FILE_PATH",
        default="",
        description="Python interpreter with Splatbrush installed (e.g. <project>/.venv/bin/python); "
        "empty: a detected Splatbrush install ($SPLATBRUSH_ENGINE_PYTHON, the `splatbrush` command)",
        update=_on_change,
    )
    remote_address: StringProperty(
        name="Address", default="tcp://gpu-box:5557", description="Remote engine", update=_on_change
    )
    server_public_key: StringProperty(
        name="Server key",
        default="",
        description="The engine's CURVE public key: 40 z85 characters or its .key file",
        update=_on_change,
    )
    client_keys: StringProperty(
        name="Client keys",
        subtype="FILE_PATH",
        default="",
        description="This client's .key_secret file (`splatbrush keys generate --name client`)",
        update=_on_change,
    )
    model_cache: StringProperty(
        name="Model cache",
        subtype="DIR_PATH",
        default="",
        description="Where a started engine keeps model weights (HF_HOME); empty: its default",
        update=_on_change,
    )
    state_dir: StringProperty(
        name="Job folder",
        subtype="DIR_PATH",
        default="",
        description="Where a started engine keeps its jobs (--state-dir); empty: its default",
        update=_on_change,
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto", update=_on_change)
    start_timeout: FloatProperty(
        name="Start timeout", default=120.0, min=5.0, max=3600.0, subtype="TIME", update=_on_change
    )
    earlier_jobs: EnumProperty(
        name="Earlier jobs",
        items=[
            ("cancel", "Cancel", "Cancel unfinished jobs of an earlier session (listed in the panel)"),
            ("keep", "Keep", "Let them run first (listed in the panel)"),
        ],
        default="cancel",
        description="Unfinished jobs left on an engine this add-on starts (e.g. after a crash)",
        update=_on_change,
    )

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
            if self.auto_start and not self.python_path.strip():
                col = box.column(align=True)
                col.label(
                    text="Engine Python is empty: a Splatbrush install is searched for on Stylize.",
                    icon="INFO",
                )
                col.label(
                    text="If none is found, set it to <project>/.venv/bin/python (scripts/setup_venv.sh)."
                )
            box.prop(self, "model_cache")
            box.prop(self, "state_dir")
            box.prop(self, "start_timeout")
            box.prop(self, "earlier_jobs")
        else:
            box.prop(self, "remote_address")
            box.prop(self, "server_public_key")
            box.prop(self, "client_keys")
            if not bpy.app.online_access:
                box.label(
                    text="Online access is off (Preferences > System > Network): Remote is blocked",
                    icon="ERROR",
                )
        problem = self.address_problem()
        if problem:
            box.label(text=problem, icon="ERROR")
        layout.prop(self, "device")

    def address_problem(self) -> str:
        """ "" or what is wrong with the address in use (for the preferences UI and Stylize's poll)."""
        local = self.engine_mode == "LOCAL"
        try:
            validate_address(self.local_address if local else self.remote_address)
        except ValueError as e:
            return str(e)
        return ""

    def engine_options(self) -> EngineOptions:
        """The options for a job; ValueError/RuntimeError with what to change when they cannot work."""
        local = self.engine_mode == "LOCAL"
        address = validate_address(self.local_address if local else self.remote_address)
        if not local and not bpy.app.online_access:
            raise RuntimeError(
                f"a Remote engine ({address}) needs online access, which is off in Blender: allow it in "
                "Edit > Preferences > System > Network > Allow Online Access (or start Blender with "
                "--online-mode), or use a Local engine"
            )
        return EngineOptions(
            address=address,
            auto_start=local and self.auto_start,
            python=bpy.path.abspath(self.python_path) if self.python_path else "",
            server_public_key="" if local else self.server_public_key,
            client_keys="" if local else bpy.path.abspath(self.client_keys) if self.client_keys else "",
            model_cache=bpy.path.abspath(self.model_cache) if self.model_cache else "",
            state_dir=bpy.path.abspath(self.state_dir) if self.state_dir else "",
            start_timeout=self.start_timeout,
            earlier_jobs=self.earlier_jobs,
        )


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    if addon is None:
        raise RuntimeError(f"the add-on {__package__} is not enabled")
    return addon.preferences


# ------------------------------------------------------------------------------------------ persistence
def _prefs_path() -> Path:
    return Path(bpy.utils.user_resource("CONFIG")) / PREFS_FILE


def _property_names(prefs) -> list[str]:
    return [p.identifier for p in prefs.bl_rna.properties if p.identifier not in ("rna_type", "bl_idname")]


def save_preferences(prefs) -> None:
    """Write every preference to the JSON file (atomically; errors are printed, never raised)."""
    values = {name: getattr(prefs, name) for name in _property_names(prefs)}
    path = _prefs_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=1))
        os.replace(tmp, path)
    except OSError as e:
        print(f"Splatbrush: could not save the preferences to {path}: {e}")


def restore_preferences(prefs) -> list[str]:
    """Set the preferences saved in the JSON file, if every current value is still the default (a freshly
    enabled add-on; values Blender restored itself are newer). Returns the names restored."""
    global _restoring
    path = _prefs_path()
    if not path.is_file():
        return []
    names = _property_names(prefs)
    if any(prefs.is_property_set(name) for name in names):
        return []
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"Splatbrush: ignoring unreadable saved preferences {path}: {e}")
        return []
    restored = []
    _restoring = True
    try:
        for name, value in saved.items():
            if name in names:
                try:
                    setattr(prefs, name, value)
                    restored.append(name)
                except (TypeError, ValueError) as e:
                    print(f"Splatbrush: saved preference {name}={value!r} ignored: {e}")
    finally:
        _restoring = False
    return restored


def restore_on_register() -> None:
    addon = bpy.context.preferences.addons.get(__package__)
    if addon is not None and addon.preferences is not None:
        restore_preferences(addon.preferences)


def save_on_unregister() -> None:
    addon = bpy.context.preferences.addons.get(__package__)
    if addon is not None and addon.preferences is not None:
        save_preferences(addon.preferences)


classes = (SPLATBRUSH_AP_preferences,)
