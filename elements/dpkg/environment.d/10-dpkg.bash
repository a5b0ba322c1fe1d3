# apt and dpkg in the build must never ask questions
export DEBIAN_FRONTEND=noninteractive
