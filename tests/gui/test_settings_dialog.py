"""The settings dialog: fields loaded, edits returned, invalid input refused inline."""

from __future__ import annotations

import pytest

from desktop_call.ui.settings import RecentCall, Settings
from desktop_call.ui.settings_dialog import SettingsDialog

CAMERAS = [("cam-1", "HD Webcam"), ("cam-2", "Document camera")]
MICS = [("mic-1", "Headset microphone")]
SPEAKERS = [("spk-1", "Headphones")]


@pytest.fixture
def settings():
    return Settings(
        display_name="Alice",
        recent_calls=(RecentCall("7k3m-q9vd-x2ha", 1_700_000_000.0),),
    )


@pytest.fixture
def dialog(qtbot, settings):
    widget = SettingsDialog(settings, cameras=CAMERAS, microphones=MICS, speakers=SPEAKERS)
    qtbot.addWidget(widget)
    return widget


def test_loads_the_settings(dialog, settings):
    assert dialog.name_edit.text() == "Alice"
    assert dialog.embedded_radio.isChecked()
    assert dialog.port_spin.value() == settings.embedded_port
    assert dialog.ice_edit.text() == "default"
    assert dialog.camera_combo.currentText() == "System default"
    assert [dialog.camera_combo.itemText(i) for i in range(3)] == [
        "System default",
        "HD Webcam",
        "Document camera",
    ]
    assert dialog.ok_button.isEnabled()
    assert dialog.result_settings() == settings


def test_returns_edited_settings(qtbot, dialog, settings):
    dialog.name_edit.setText("  Bo  ")
    dialog.codec_combo.setCurrentIndex(dialog.codec_combo.findData("H264"))
    dialog.resolution_combo.setCurrentIndex(dialog.resolution_combo.findData("1280x720"))
    dialog.camera_combo.setCurrentIndex(dialog.camera_combo.findData("cam-2"))
    dialog.microphone_combo.setCurrentIndex(dialog.microphone_combo.findData("mic-1"))
    dialog.echo_check.setChecked(False)
    dialog.remote_radio.setChecked(True)
    dialog.server_url_edit.setText("wss://call.example.org")
    dialog.token_edit.setText("s3cret")
    assert dialog.ok_button.isEnabled()
    result = dialog.result_settings()
    assert result.display_name == "Bo"
    assert result.video_codec == "H264"
    assert result.resolution == "1280x720"
    assert result.camera_id == "cam-2"
    assert result.microphone_id == "mic-1"
    assert result.speaker_id == ""
    assert result.echo_cancellation is False
    assert result.server_mode == "remote"
    assert result.remote_server_url == "wss://call.example.org"
    assert result.server_token == "s3cret"
    assert result.recent_calls == settings.recent_calls
    assert result.validated() == result  # nothing the loader would refuse


def test_refuses_a_bad_server_url(qtbot, dialog):
    dialog.remote_radio.setChecked(True)
    dialog.server_url_edit.setText("ftp://nope")
    assert not dialog.ok_button.isEnabled()
    assert dialog.server_error.isVisibleTo(dialog)
    assert "not a server address" in dialog.server_error.text()
    assert dialog.server_url_edit.property("invalid") is True
    with pytest.raises(ValueError, match="not a server address"):
        dialog.result_settings()
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted

    dialog.server_url_edit.setText("call.example.org:9000")
    assert dialog.ok_button.isEnabled()
    assert not dialog.server_error.isVisibleTo(dialog)
    assert dialog.server_url_edit.property("invalid") is False
    with qtbot.waitSignal(dialog.accepted, raising=True, timeout=1000):
        dialog.ok_button.click()


def test_remote_mode_needs_an_address(dialog):
    dialog.remote_radio.setChecked(True)
    assert not dialog.ok_button.isEnabled()
    assert "address" in dialog.server_error.text()
    dialog.embedded_radio.setChecked(True)
    assert dialog.ok_button.isEnabled()


def test_turn_needs_credentials(dialog):
    dialog.ice_edit.setText("stun:stun.example.org:3478, turn:turn.example.org:3478")
    assert not dialog.ok_button.isEnabled()
    assert "username and a credential" in dialog.ice_error.text()
    assert dialog.turn_user_edit.property("invalid") is True
    dialog.turn_user_edit.setText("alice")
    dialog.turn_credential_edit.setText("pw")
    assert dialog.ok_button.isEnabled()
    result = dialog.result_settings()
    assert result.turn_username == "alice"
    assert any(server.is_turn for server in result.ice_config().servers)


def test_bad_ice_url_and_relay_only(dialog):
    dialog.ice_edit.setText("http://example.org")
    assert not dialog.ok_button.isEnabled()
    assert dialog.ice_edit.property("invalid") is True
    dialog.ice_edit.setText("default")
    dialog.relay_check.setChecked(True)
    # Relay-only without a TURN server of one's own: allowed (the room server may hand
    # one out), with a hint that says so.
    assert dialog.ok_button.isEnabled()
    assert not dialog.relay_hint.isHidden()
    assert "room server" in dialog.relay_hint.text()
    dialog.ice_edit.setText("turn:turn.example.org:3478")
    dialog.turn_user_edit.setText("u")
    dialog.turn_credential_edit.setText("c")
    assert dialog.relay_hint.isHidden()
    dialog.relay_check.setChecked(False)
    assert dialog.ok_button.isEnabled()


def test_empty_name_is_refused(dialog):
    dialog.name_edit.setText("   ")
    assert not dialog.ok_button.isEnabled()
    assert dialog.name_error.isVisibleTo(dialog)


def test_unplugged_device_is_kept(qtbot):
    dialog = SettingsDialog(Settings(display_name="A", camera_id="usb-cam-9"), cameras=CAMERAS)
    qtbot.addWidget(dialog)
    assert "usb-cam-9" in dialog.camera_combo.currentText()
    assert dialog.result_settings().camera_id == "usb-cam-9"


def test_lan_choice_maps_to_host(qtbot, dialog):
    assert dialog.lan_check.isChecked()
    dialog.lan_check.setChecked(False)
    assert dialog.result_settings().embedded_host == "127.0.0.1"
    dialog.lan_check.setChecked(True)
    assert dialog.result_settings().embedded_host == "0.0.0.0"


def test_renders(qtbot, dialog):
    dialog.show()
    qtbot.waitExposed(dialog)
    assert not dialog.grab().isNull()
