#!/bin/sh
# Build a tiny busybox initramfs that loads the NIC + NFSv3 modules, gets an
# address (DHCP with udhcpc, or static from the kernel command line), mounts
# an NFSv3 root from a server WITHOUT portmapper (explicit port=/mountport=,
# nolock) and switch_root's into it. Derived from the netboot e2e recipe
# (Appendix A); the harness in this directory runs it and caches the result
# keyed by this file's hash.
#
# Usage: build-initramfs.sh KROOT OUT.img
#   KROOT = directory where a Debian linux-image-*.deb was `dpkg -x`'d
# Needs only: busybox (static), gzip, sh, and xz/zstd for compressed modules.
#
# Kernel command line understood by /init (all optional):
#   nfsroot=IP:/path[,opts] root export (else DHCP option 17, else SERVER:/);
#                         kernel-style options after the comma are added to
#                         the mount options, port=N also sets nfsport
#   nfsport=N             NFS and MOUNT port (default 2049)
#   nfsopts=a,b           appended to the mount options
#   nfsfullopts=...       replaces the mount options entirely
#   ip=CLIENT:SERVER:GW:NETMASK:HOST:DEV:off   static address, kernel style
#                         (NETMASK dotted or prefix length; DEV empty = first NIC)
#   pxeip=ADDR/PREFIX pxegw=GW pxeserver=IP    static address, short form
#   ip=dhcp               DHCP (the default)
#   pxevendor=STRING      DHCP option 60 of the initramfs (default pxe-e2e-initrd)
#   pxedebug              drop to a shell before switch_root
# Exported to /sbin/init of the NFS root: PXE_IF PXE_IP PXE_SERVER PXE_NFS_SERVER
# PXE_NFS_EXPORT PXE_NFS_OPTS PXE_ADDR_MODE.
set -eu
KROOT=${1:?kernel extract dir}
OUT=$(realpath -m "${2:?output initrd}")
BB=${BUSYBOX:-/bin/busybox}
KVER=$(ls "$KROOT/lib/modules" | head -n1)
MODDIR="$KROOT/lib/modules/$KVER"
# NIC drivers for QEMU virtio-net and e1000, plus NFSv3 client stack.
WANT=${WANT_MODULES:-"virtio_pci virtio_net e1000 nfsv3"}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bin" "$W/dev" "$W/proc" "$W/sys" "$W/newroot" "$W/tmp" "$W/lib/modules" "$W/etc"
cp "$BB" "$W/bin/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$W/bin/$a"; done
ln -s bin "$W/sbin"

# --- module dependency resolution without kmod (reads depends= from .modinfo)
find "$MODDIR/kernel" -name '*.ko*' | awk -F/ '{n=$NF; sub(/\.ko.*$/,"",n); gsub(/-/,"_",n); print n, $0}' > "$W/modindex"
modfile() { # module name with _ or -  ->  path of its .ko[.xz|.zst]
  n=$(echo "$1" | tr '-' '_')
  awk -v n="$n" '$1==n {print $2; f=1; exit} END {if (!f) exit 1}' "$W/modindex" || { echo "module $1 not found" >&2; return 1; }
}
unpack() { case "$1" in *.xz) xz -dc "$1";; *.zst) zstd -dcq "$1";; *.gz) gzip -dc "$1";; *) cat "$1";; esac; }
: > "$W/lib/modules/load.order"
resolve() {
  grep -qx "$1" "$W/lib/modules/load.order" && return 0
  f=$(modfile "$1")
  unpack "$f" > "$W/lib/modules/$1.ko"
  for d in $(tr '\0' '\n' < "$W/lib/modules/$1.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
    resolve "$(echo "$d" | tr '-' '_')"
  done
  echo "$1" >> "$W/lib/modules/load.order"
}
for m in $WANT; do resolve "$(echo "$m" | tr '-' '_')"; done

cat > "$W/bin/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc hook: configure the interface and dump the lease to /tmp/dhcp.env
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "${router:-}" ] && ip route add default via "${router%% *}" dev "$interface" 2>/dev/null
    {
      echo "ip=$ip"; echo "mask=${mask:-}"; echo "router=${router:-}"
      echo "serverid=${serverid:-}"; echo "siaddr=${siaddr:-}"
      echo "rootpath='${rootpath:-}'"; echo "boot_file='${boot_file:-}'"
      echo "hostname='${hostname:-}'"
    } > /tmp/dhcp.env ;;
esac
exit 0
EOF
chmod 755 "$W/bin/udhcpc.script"

cat > "$W/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
st() { read up _ < /proc/uptime; echo "PXE-STAGE $1 uptime=$up $2"; }
fail() { echo "PXE-FAIL $*"; sleep 1; poweroff -f; }
# netmask (dotted or prefix length) -> prefix length
prefixlen() {
  case "$1" in
    *.*) n=0; for o in $(echo "$1" | tr . ' '); do
           case $o in 255) n=$((n+8));; 254) n=$((n+7));; 252) n=$((n+6));; 248) n=$((n+5));;
             240) n=$((n+4));; 224) n=$((n+3));; 192) n=$((n+2));; 128) n=$((n+1));; esac; done; echo $n ;;
    '') echo 24 ;;
    *) echo "$1" ;;
  esac
}
st initrd-start
NFSROOT=; NFSPORT=2049; NFSOPTS=; NFSFULLOPTS=; PXEDEBUG=; VENDOR=pxe-e2e-initrd
SIP=; SPFX=; SGW=; SSRV=; SHOST=; SDEV=
for a in $(cat /proc/cmdline); do
  case "$a" in
    nfsroot=*) NFSROOT=${a#nfsroot=} ;;
    nfsport=*) NFSPORT=${a#nfsport=} ;;
    nfsopts=*) NFSOPTS=,${a#nfsopts=} ;;
    nfsfullopts=*) NFSFULLOPTS=${a#nfsfullopts=} ;;
    pxevendor=*) VENDOR=${a#pxevendor=} ;;
    pxeip=*) v=${a#pxeip=}; SIP=${v%%/*}; [ "$v" != "$SIP" ] && SPFX=${v#*/} ;;
    pxegw=*) SGW=${a#pxegw=} ;;
    pxeserver=*) SSRV=${a#pxeserver=} ;;
    ip=dhcp|ip=on|ip=any|ip=both) ;;
    ip=*)
      # ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>
      v=${a#ip=}; o=$IFS; IFS=:; set -- $v; IFS=$o
      SIP=${1:-}; SSRV=${2:-}; SGW=${3:-}; SPFX=$(prefixlen "${4:-}"); SHOST=${5:-}; SDEV=${6:-} ;;
    pxedebug) PXEDEBUG=1 ;;
  esac
done
for m in $(cat /lib/modules/load.order); do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
st modules-loaded
ip link set lo up
IF=$SDEV
for i in $(seq 1 100); do
  [ -n "$IF" ] && [ -e "/sys/class/net/$IF" ] && break
  [ -z "$SDEV" ] && for n in /sys/class/net/*; do n=${n##*/}; [ "$n" != lo ] && { IF=$n; break; }; done
  [ -n "$IF" ] && [ -e "/sys/class/net/$IF" ] && break; sleep 0.05
done
[ -n "$IF" ] && [ -e "/sys/class/net/$IF" ] || fail "no network interface ${SDEV}"
ip link set "$IF" up
# wait for carrier (e1000 needs ~1 s; a DISCOVER sent before link-up is lost and costs a 1 s retry)
for i in $(seq 1 100); do [ "$(cat /sys/class/net/$IF/carrier 2>/dev/null)" = 1 ] && break; sleep 0.05; done
if [ -n "$SIP" ]; then
  ADDRMODE=static
  ip addr add "$SIP/${SPFX:-24}" dev "$IF" || fail "ip addr add $SIP/${SPFX:-24}"
  [ -n "$SGW" ] && { ip route add default via "$SGW" dev "$IF" || fail "default route via $SGW"; }
  [ -n "$SHOST" ] && hostname "$SHOST"
  ip=$SIP; serverid=${SSRV:-$SGW}; rootpath=
  st static-ip "if=$IF ip=$SIP/${SPFX:-24} gw=$SGW server=$serverid"
else
  ADDRMODE=dhcp
  st dhcp-start "if=$IF"
  udhcpc -i "$IF" -f -q -n -t 20 -T 1 -O rootpath -O hostname -V "$VENDOR" -s /bin/udhcpc.script || fail "dhcp"
  . /tmp/dhcp.env
  [ -n "$hostname" ] && hostname "$hostname"
  st dhcp-bound "ip=$ip server=$serverid siaddr=$siaddr rootpath=$rootpath"
fi
# root path precedence: cmdline nfsroot= > DHCP option 17 > server:/
[ -z "$NFSROOT" ] && NFSROOT=$rootpath
[ -z "$NFSROOT" ] && [ -n "$serverid" ] && NFSROOT="$serverid:/"
[ -n "$NFSROOT" ] || fail "no nfs root: give nfsroot= or a server in ip="
# kernel-style nfsroot=SERVER:/path,opts (what pictl renders for every node)
case "$NFSROOT" in *,*)
  for o in $(echo "${NFSROOT#*,}" | tr , ' '); do
    case "$o" in port=*) NFSPORT=${o#port=} ;; mountport=*|vers=*|tcp|nolock) ;; *) NFSOPTS="$NFSOPTS,$o" ;; esac
  done
  NFSROOT=${NFSROOT%%,*} ;;
esac
SRV=${NFSROOT%%:*}; EXP=${NFSROOT#*:}
O="vers=3,proto=tcp,port=$NFSPORT,mountport=$NFSPORT,mountproto=tcp,nolock,noacl,addr=$SRV$NFSOPTS"
[ -n "$NFSFULLOPTS" ] && O=$NFSFULLOPTS
st nfs-mount-start "$SRV:$EXP opts=$O"
mount -t nfs -o "$O" "$SRV:$EXP" /newroot || fail "nfs mount $SRV:$EXP"
st nfs-mounted
# An absolute symlink (Debian: /sbin/init -> /lib/systemd/systemd) would be
# resolved against this initramfs, so a link is accepted as it is.
[ -x /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || fail "no /sbin/init on nfs root"
mount --move /dev /newroot/dev || fail "move /dev (does /dev exist on the nfs root?)"
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
export PXE_IF=$IF PXE_IP=$ip PXE_SERVER=$serverid PXE_NFS_SERVER=$SRV PXE_NFS_EXPORT=$EXP PXE_NFS_OPTS=$O PXE_ADDR_MODE=$ADDRMODE
[ -n "$PXEDEBUG" ] && sh
exec switch_root /newroot /sbin/init
EOF
chmod 755 "$W/init"

(cd "$W" && rm -f modindex && find . | "$BB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -6 > "$OUT.tmp") && mv "$OUT.tmp" "$OUT"
echo "initramfs $OUT: $(wc -c < "$OUT") bytes, modules: $(tr '\n' ' ' < "$W/lib/modules/load.order")"
