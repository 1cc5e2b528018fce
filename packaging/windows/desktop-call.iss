; Inno Setup script: the Windows installer of Desktop Call.
;
;   iscc /DAppVersion=0.1.0 /DSourceDir=..\..\dist\desktop-call /DOutputDir=..\..\dist desktop-call.iss
;
; packaging/build_windows.py runs PyInstaller (build.spec) and then this, with the
; version from desktop_call.__version__. Per-user install by default (no admin
; prompt; the dialog offers "for all users"): Start menu entry, uninstaller, and
; the dcall:// URL handler (HKCU or HKLM\Software\Classes\dcall).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\desktop-call"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#define AppName "Desktop Call"
#define AppExe "desktop-call.exe"

[Setup]
; A fixed AppId: upgrades replace the previous version in place.
AppId={{6F1B7C2E-3A52-4E0B-9C1D-DCA11D0E5C01}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Desktop Call
DefaultDirName={autopf}\Desktop Call
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=desktop-call-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\app.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
LicenseFile={#SourceDir}\_internal\licenses\NOTICE.txt
Compression=lzma2/ultra64
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autoprograms}\{#AppName} licences"; Filename: "{app}\_internal\licenses\NOTICE.txt"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; dcall://HOST:PORT/CALL-ID opens the app straight into that call.
Root: HKA; Subkey: "Software\Classes\dcall"; ValueType: string; ValueName: ""; ValueData: "URL:Desktop Call link"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\dcall"; ValueType: string; ValueName: "URL Protocol"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\dcall\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"",0"
Root: HKA; Subkey: "Software\Classes\dcall\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Settings and logs stay (per-user data); only what the app wrote beside itself goes.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
