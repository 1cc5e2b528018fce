"""The settings dialog: edits a :class:`Settings`, checks every field as it is typed.

An invalid field is outlined in red with a plain message under it, and OK stays
disabled until it is fixed. ``result_settings()`` returns the edited, validated
settings (recent calls carried over unchanged). Devices are offered from lists
of ``(id, description)`` the app passes in; "System default" is always first.
"Test connection" checks the values in the dialog, saved or not (connection_test.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_call.call.ice import IceConfig, InvalidIceConfig
from desktop_call.signaling.ids import InvalidCallTarget, parse_server_url
from desktop_call.signaling.protocol import MAX_NAME_CHARS
from desktop_call.ui import theme
from desktop_call.ui.connection_test import ConnectionTest
from desktop_call.ui.settings import CODECS, RESOLUTIONS, Settings

__all__ = ["SettingsDialog"]

Devices = Sequence[tuple[str, str]]

CODEC_LABELS = {"auto": "Automatic", "VP8": "VP8", "H264": "H.264"}
RESOLUTION_LABELS = {
    "640x480": "640 \N{MULTIPLICATION SIGN} 480 (SD)",
    "1280x720": "1280 \N{MULTIPLICATION SIGN} 720 (HD)",
    "1920x1080": "1920 \N{MULTIPLICATION SIGN} 1080 (Full HD)",
}
LOCAL_ONLY_HOSTS = ("127.0.0.1", "localhost", "::1")


def _error_label() -> QLabel:
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setProperty("role", "error")
    label.hide()
    return label


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setProperty("role", "hint")
    return label


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: Settings,
        *,
        cameras: Devices = (),
        microphones: Devices = (),
        speakers: Devices = (),
        embedded_url: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.original = settings
        self.errors: dict[str, str] = {}
        #: Where this computer's room server answers, if it runs (tested in "This computer" mode).
        self.embedded_url = embedded_url
        self._build(cameras, microphones, speakers)
        self._load(settings)
        self._connect()
        self.validate()
        self.resize(580, 600)
        theme.follow_theme(self)

    # ------------------------------------------------------------------ building

    def _build(self, cameras: Devices, microphones: Devices, speakers: Devices) -> None:
        # You
        self.name_edit = QLineEdit()
        self.name_edit.setMaxLength(MAX_NAME_CHARS)
        self.name_edit.setAccessibleName("Your name")
        self.name_edit.setPlaceholderText("The name the other person sees")
        self.name_error = _error_label()
        you = QGroupBox("You")
        you_form = QFormLayout(you)
        you_form.addRow("Name", self.name_edit)
        you_form.addRow("", self.name_error)

        # Server
        self.embedded_radio = QRadioButton("This computer")
        self.embedded_radio.setAccessibleName("Use this computer as the room server")
        self.remote_radio = QRadioButton("Server")
        self.remote_radio.setAccessibleName("Use a room server on the internet")
        self.server_group = QButtonGroup(self)
        self.server_group.addButton(self.embedded_radio)
        self.server_group.addButton(self.remote_radio)
        self.port_spin = QSpinBox()
        self.port_spin.setRange(0, 65535)
        self.port_spin.setSpecialValueText("Any free port")
        self.port_spin.setAccessibleName("Port of this computer's room server")
        self.lan_check = QCheckBox("Other computers on my network can join")
        self.lan_check.setAccessibleName("Reachable on the local network")
        self.server_url_edit = QLineEdit()
        self.server_url_edit.setPlaceholderText("wss://call.example.org")
        self.server_url_edit.setAccessibleName("Server address")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("Only if the server asks for one")
        self.token_edit.setAccessibleName("Server token")
        self.server_error = _error_label()

        server = QGroupBox("Room server")
        server_layout = QVBoxLayout(server)
        server_layout.addWidget(self.embedded_radio)
        embedded_form = QFormLayout()
        embedded_form.setContentsMargins(24, 0, 0, 0)
        embedded_form.addRow("Port", self.port_spin)
        embedded_form.addRow("", self.lan_check)
        server_layout.addLayout(embedded_form)
        server_layout.addWidget(self.remote_radio)
        remote_form = QFormLayout()
        remote_form.setContentsMargins(24, 0, 0, 0)
        remote_form.addRow("Address", self.server_url_edit)
        remote_form.addRow("Token", self.token_edit)
        remote_form.addRow("", self.server_error)
        server_layout.addLayout(remote_form)
        server_layout.addWidget(
            _hint("The room server only introduces the two of you; video goes directly.")
        )

        # STUN / TURN
        self.ice_edit = QLineEdit()
        self.ice_edit.setAccessibleName("STUN and TURN servers")
        self.ice_edit.setPlaceholderText("default")
        self.ice_edit.setToolTip(
            "default (Google's public STUN), none, or stun:, turn:, turns: URLs separated by commas"
        )
        self.turn_user_edit = QLineEdit()
        self.turn_user_edit.setAccessibleName("TURN username")
        self.turn_credential_edit = QLineEdit()
        self.turn_credential_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.turn_credential_edit.setAccessibleName("TURN credential")
        self.relay_check = QCheckBox("Always relay through TURN (hides your IP address)")
        self.relay_check.setAccessibleName("Relay only")
        self.ice_error = _error_label()
        network = QGroupBox("Connection (STUN/TURN)")
        network_form = QFormLayout(network)
        network_form.addRow("Servers", self.ice_edit)
        network_form.addRow("", _hint("default, none, or URLs like stun:host:3478, turn:host:3478"))
        network_form.addRow("TURN username", self.turn_user_edit)
        network_form.addRow("TURN credential", self.turn_credential_edit)
        network_form.addRow("", self.relay_check)
        self.relay_hint = _hint(
            "No TURN server of yours: calls use the one the room server hands out, and "
            "without one they will not connect (Test connection tells)."
        )
        network_form.addRow("", self.relay_hint)
        network_form.addRow("", self.ice_error)

        self.connection_test = ConnectionTest(self._test_values)

        # Audio and video
        self.codec_combo = QComboBox()
        self.codec_combo.setAccessibleName("Preferred video codec")
        for codec in CODECS:
            self.codec_combo.addItem(CODEC_LABELS.get(codec, codec), codec)
        self.resolution_combo = QComboBox()
        self.resolution_combo.setAccessibleName("Video resolution")
        for resolution in RESOLUTIONS:
            self.resolution_combo.addItem(RESOLUTION_LABELS.get(resolution, resolution), resolution)
        self.camera_combo = self._device_combo("Camera", cameras)
        self.microphone_combo = self._device_combo("Microphone", microphones)
        self.speaker_combo = self._device_combo("Speaker", speakers)
        self.echo_check = QCheckBox("Echo cancellation (keeps your speaker out of your microphone)")
        self.echo_check.setAccessibleName("Echo cancellation")
        media = QGroupBox("Audio and video")
        media_form = QFormLayout(media)
        media_form.addRow("Camera", self.camera_combo)
        media_form.addRow("Microphone", self.microphone_combo)
        media_form.addRow("Speaker", self.speaker_combo)
        media_form.addRow("Video codec", self.codec_combo)
        media_form.addRow("Resolution", self.resolution_combo)
        media_form.addRow("", self.echo_check)

        content = QWidget()
        column = QVBoxLayout(content)
        for group in (you, server, network, self.connection_test, media):
            column.addWidget(group)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setAccessibleName("Save settings")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.summary = _error_label()

        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        footer = QHBoxLayout()
        footer.addWidget(self.summary, 1)
        footer.addWidget(self.buttons)
        layout.addLayout(footer)

    @staticmethod
    def _device_combo(kind: str, devices: Devices) -> QComboBox:
        combo = QComboBox()
        combo.setAccessibleName(kind)
        combo.addItem("System default", "")
        for device_id, description in devices:
            combo.addItem(description or device_id, device_id)
        return combo

    @staticmethod
    def _select(combo: QComboBox, value: str, missing: str = "{} (not connected)") -> None:
        index = combo.findData(value)
        if index < 0 and value:
            combo.addItem(missing.format(value), value)
            index = combo.count() - 1
        combo.setCurrentIndex(max(0, index))

    def _load(self, settings: Settings) -> None:
        self.name_edit.setText(settings.display_name)
        remote = settings.server_mode == "remote"
        self.remote_radio.setChecked(remote)
        self.embedded_radio.setChecked(not remote)
        self.port_spin.setValue(settings.embedded_port)
        self._lan_initially = settings.embedded_host not in LOCAL_ONLY_HOSTS
        self.lan_check.setChecked(self._lan_initially)
        self.server_url_edit.setText(settings.remote_server_url)
        self.token_edit.setText(settings.server_token)
        self.ice_edit.setText(settings.ice_servers)
        self.turn_user_edit.setText(settings.turn_username)
        self.turn_credential_edit.setText(settings.turn_credential)
        self.relay_check.setChecked(settings.relay_only)
        self._select(self.codec_combo, settings.video_codec, "{}")
        self._select(self.resolution_combo, settings.resolution, "{}")
        self._select(self.camera_combo, settings.camera_id)
        self._select(self.microphone_combo, settings.microphone_id)
        self._select(self.speaker_combo, settings.speaker_id)
        self.echo_check.setChecked(settings.echo_cancellation)

    def _connect(self) -> None:
        for edit in (
            self.name_edit,
            self.server_url_edit,
            self.token_edit,
            self.ice_edit,
            self.turn_user_edit,
            self.turn_credential_edit,
        ):
            edit.textChanged.connect(self.validate)
        for check in (self.embedded_radio, self.remote_radio, self.relay_check, self.lan_check):
            check.toggled.connect(self.validate)
        self.port_spin.valueChanged.connect(self.validate)

    # ------------------------------------------------------------------ validation

    def _collect(self) -> Settings:
        remote = self.remote_radio.isChecked()
        host = self.original.embedded_host
        if self.lan_check.isChecked() != self._lan_initially:
            host = "0.0.0.0" if self.lan_check.isChecked() else "127.0.0.1"
        url = self.server_url_edit.text().strip()
        return replace(
            self.original,
            display_name=self.name_edit.text().strip(),
            server_mode="remote" if remote else "embedded",
            embedded_host=host,
            embedded_port=self.port_spin.value(),
            remote_server_url=url,
            server_token=self.token_edit.text().strip(),
            ice_servers=self.ice_edit.text().strip() or "default",
            turn_username=self.turn_user_edit.text().strip(),
            turn_credential=self.turn_credential_edit.text(),
            relay_only=self.relay_check.isChecked(),
            video_codec=str(self.codec_combo.currentData()),
            resolution=str(self.resolution_combo.currentData()),
            camera_id=str(self.camera_combo.currentData() or ""),
            microphone_id=str(self.microphone_combo.currentData() or ""),
            speaker_id=str(self.speaker_combo.currentData() or ""),
            echo_cancellation=self.echo_check.isChecked(),
            problems=(),
        )

    def _check(self, candidate: Settings) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not candidate.display_name:
            errors["name"] = "Enter the name the other person will see."
        if candidate.server_mode == "remote":
            if not candidate.remote_server_url:
                errors["server"] = "Enter the server's address, like wss://call.example.org."
            else:
                try:
                    parse_server_url(candidate.remote_server_url)
                except InvalidCallTarget as exc:
                    errors["server"] = str(exc)
        try:
            candidate.ice_config()
        except (InvalidIceConfig, ValueError) as exc:
            errors["ice"] = str(exc)
        return errors

    @Slot()
    def validate(self) -> bool:
        """Check every field; show problems inline; OK only when all is well."""
        remote = self.remote_radio.isChecked()
        for widget in (self.server_url_edit, self.token_edit):
            widget.setEnabled(remote)
        for widget in (self.port_spin, self.lan_check):
            widget.setEnabled(not remote)
        candidate = self._collect()
        self.errors = self._check(candidate)
        try:
            own_turn = any(server.is_turn for server in candidate.ice_config().servers)
        except (InvalidIceConfig, ValueError):
            own_turn = True  # the error says what is wrong; no hint on top
        self.relay_hint.setVisible(candidate.relay_only and not own_turn)
        labels = {"name": self.name_error, "server": self.server_error, "ice": self.ice_error}
        for key, label in labels.items():
            label.setText(self.errors.get(key, ""))
            label.setVisible(key in self.errors)
        marked: list[QWidget] = []
        if "name" in self.errors:
            marked.append(self.name_edit)
        if "server" in self.errors:
            marked.append(self.server_url_edit)
        if "ice" in self.errors:
            if "username" in self.errors["ice"]:
                marked += [self.turn_user_edit, self.turn_credential_edit]
            else:
                marked.append(self.ice_edit)
        for widget in (
            self.name_edit,
            self.server_url_edit,
            self.ice_edit,
            self.turn_user_edit,
            self.turn_credential_edit,
        ):
            theme.set_flag(widget, "invalid", widget in marked)
        valid = not self.errors
        self.ok_button.setEnabled(valid)
        self.connection_test.set_available(valid)
        count = len(self.errors)
        self.summary.setText(
            ""
            if valid
            else "Fix the problem shown in red."
            if count == 1
            else f"Fix the {count} problems shown in red."
        )
        self.summary.setVisible(not valid)
        return valid

    def is_valid(self) -> bool:
        return not self.errors

    def result_settings(self) -> Settings:
        """The edited settings; ``ValueError`` if a field is still invalid."""
        candidate = self._collect()
        errors = self._check(candidate)
        if errors:
            raise ValueError(" ".join(errors.values()))
        if candidate.server_mode != "remote" and candidate.remote_server_url:
            try:
                parse_server_url(candidate.remote_server_url)
            except InvalidCallTarget:
                candidate = replace(candidate, remote_server_url="")
        return candidate

    def accept(self) -> None:
        if self.validate():
            super().accept()

    def done(self, result: int) -> None:
        """Closing (OK, Cancel, Esc, the window's X) cancels a running connection test."""
        self.connection_test.close_down()
        super().done(result)

    def _test_values(self) -> tuple[str | None, IceConfig, str | None]:
        """What "Test connection" checks: the values as they are now, saved or not."""
        candidate = self._collect()
        if self._check(candidate):
            raise ValueError("Fix the problems shown in red first.")
        if candidate.server_mode == "remote":
            return candidate.server_url(), candidate.ice_config(), candidate.server_token or None
        return self.embedded_url, candidate.ice_config(), None
