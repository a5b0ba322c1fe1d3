# Find the VM manager's setup disk (1 MiB, holding the template's setup script), copy the
# script from it and run it, once.
$ErrorActionPreference = 'Stop'
$done = 'C:\vmmgr\firstrun.done'
if (Test-Path $done) { exit 0 }

# dd --list names each device on one line and gives its size on a later one
$list = @(& C:\vmmgr\ddwrap.cmd --list)
$device = $null
for ($i = 0; $i -lt $list.Count -and -not $device; $i++) {
    if ($list[$i] -match 'size is 1048576 bytes') {
        for ($j = $i; $j -ge 0; $j--) {
            if ($list[$j] -match '(\\\\\?\\Device\\Harddisk\d+\\Partition0)') {
                $device = $Matches[1]
                break
            }
        }
    }
}
if (-not $device) {
    Write-Error 'vmmgr: the 1 MiB setup disk was not found'
    exit 1
}

$raw = 'C:\vmmgr\setup.bin'
& C:\vmmgr\ddwrap.cmd "if=$device" "of=$raw" bs=1M count=1 | Out-Null
$bytes = [IO.File]::ReadAllBytes($raw)
# the script ends where the disk's zero padding starts
$end = [Array]::IndexOf($bytes, [byte]0)
if ($end -lt 0) { $end = $bytes.Length }
if ($end -eq 0) {
    Write-Error 'vmmgr: the setup disk holds no script'
    exit 1
}
$script = 'C:\vmmgr\setup.cmd'
[IO.File]::WriteAllBytes($script, $bytes[0..($end - 1)])
Remove-Item $raw
New-Item -ItemType File -Path $done | Out-Null
& cmd.exe /c $script
exit $LASTEXITCODE
