#!/bin/sh
# Builds .devcarry/ for bench/gpu/device_check.sh: the GPU machines have no FFmpeg, so a minimal
# FFmpeg 5.1 (the version this build links: same sonames and ABI) with the CUDA hwaccel is built
# from Debian's source package, and goes there with the check programs and two generated clips.
# Needs: a build with CUDA and tests (make build), network access to Debian's archive (deb-src),
# ffmpeg with libx264. Ignored by git (.git/info/exclude: /.devcarry/); run the device tool with
# carry [".devcarry"] and the command `sh bench/gpu/device_check.sh`.
set -eu
root=$(pwd)
work=${WORK:-/tmp/smartcity-ffmin}
mkdir -p "$work/lists/partial" "$work/src" "$work/tools"
cat >"$work/src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt="apt-get -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$work -o Dir::State::Lists=$work/lists"
if [ ! -f "$work/prefix/lib/libavcodec.so.59" ]; then
  $apt update -q
  (cd "$work/src" && $apt source --download-only ffmpeg && tar xf ffmpeg_5.1.*.orig.tar.xz)
  (cd "$work/tools" && apt-get download nasm libffmpeg-nvenc-dev && for d in *.deb; do dpkg -x "$d" root; done)
  sed -i "s#^prefix=.*#prefix=$work/tools/root/usr#" "$work/tools/root/usr/share/pkgconfig/ffnvcodec.pc"
  cd "$work/src"/ffmpeg-5.1.*/
  PATH="$work/tools/root/usr/bin:$PATH" PKG_CONFIG_PATH="$work/tools/root/usr/share/pkgconfig" ./configure \
    --prefix="$work/prefix" --enable-shared --disable-static --disable-programs --disable-doc \
    --disable-autodetect --disable-everything --enable-ffnvcodec --enable-cuda --enable-nvdec \
    --enable-hwaccel=h264_nvdec,hevc_nvdec --enable-decoder=h264,hevc --enable-parser=h264,hevc \
    --enable-demuxer=mov,matroska,h264,hevc,rtsp,sdp --enable-muxer=mp4,mov,matroska \
    --enable-protocol=file,tcp,udp,rtp,pipe \
    --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata --enable-pthreads \
    --disable-avdevice --disable-avfilter --disable-postproc --enable-swscale --enable-swresample
  PATH="$work/tools/root/usr/bin:$PATH" make -j"$(nproc)" && make install
  cd "$root"
fi
mkdir -p .devcarry/lib .devcarry/bin .devcarry/media
for f in libavformat.so.59 libavcodec.so.59 libavutil.so.57 libswscale.so.6 libswresample.so.4; do
  cp -L "$work/prefix/lib/$f" .devcarry/lib/
done
cp build/py/core_cpp/tests/nvdec_check build/py/core_cpp/cuda/nv12_cuda_check .devcarry/bin/
ffmpeg -v error -y -t 20 -i tests/media/vtest-h264.mp4 -vf scale=1920:1080 -c:v libx264 -preset veryfast \
  -crf 23 -g 20 -bf 0 -pix_fmt yuv420p .devcarry/media/1080p.mp4
# HEVC (Main, B-frames): the other codec of CCTV cameras.
ffmpeg -v error -y -t 20 -i tests/media/vtest-h264.mp4 -c:v libx265 -preset fast \
  -x265-params log-level=error:keyint=20:bframes=2 -pix_fmt yuv420p -tag:v hvc1 .devcarry/media/vtest-hevc.mp4
# Wider than NVDEC's 4096 for H.264: the GPU refuses it and the stream must fall back to the CPU.
ffmpeg -v error -y -f lavfi -i testsrc=size=4160x2336:rate=5 -t 1 -c:v libx264 -preset ultrafast \
  -pix_fmt yuv420p .devcarry/media/big.mp4
du -sh .devcarry
