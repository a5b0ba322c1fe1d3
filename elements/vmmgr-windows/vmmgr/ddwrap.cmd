@echo off
rem dd.exe writes its messages on standard error: hand them to the caller on standard output
C:\vmmgr\dd.exe %* 2>&1
