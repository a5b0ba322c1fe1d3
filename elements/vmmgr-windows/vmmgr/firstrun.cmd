@echo off
rem First start of a VM made from a VM-manager template: run the manager's setup script.
powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\vmmgr\firstrun.ps1 >NUL
