package images

import (
	"errors"
	"fmt"
	"strings"
)

// Named failures of Import. Each is wrapped with detail; test with errors.Is
// (or errors.As for the typed ones).
var (
	// ErrCorruptCompression: the compressed stream is damaged or cut short.
	ErrCorruptCompression = errors.New("corrupt compressed image")
	// ErrNoRootPartition: the disk image has no ext2/3/4 partition.
	ErrNoRootPartition = errors.New("no ext4 partition in the disk image")
	// ErrTruncatedImage: the disk image ends before its partitions or
	// filesystem do.
	ErrTruncatedImage = errors.New("disk image is truncated")
	// ErrCorruptImage: the filesystem's structures are inconsistent.
	ErrCorruptImage = errors.New("corrupt filesystem in the disk image")
	// ErrUnknownSource: SOURCE is not a disk image, a directory or a tar.
	ErrUnknownSource = errors.New("unrecognised image source")
	// ErrCorruptTar: the tar archive is malformed or cut short.
	ErrCorruptTar = errors.New("corrupt tar archive")
	// ErrExists: an image of that name is already in the store.
	ErrExists = errors.New("image already exists")
	// ErrNotFound: no image of that name.
	ErrNotFound = errors.New("no such image")
	// ErrBadName: the name is not usable as an image name.
	ErrBadName = errors.New("invalid image name")
	// ErrBusy: the image is locked by a running exec, import or removal.
	ErrBusy = errors.New("image is busy")
)

// UnsupportedFeatureError names an ext4 feature pictl cannot read.
type UnsupportedFeatureError struct {
	Feature string
}

func (e *UnsupportedFeatureError) Error() string {
	return fmt.Sprintf("root filesystem uses ext4 feature %q, which pictl cannot import", e.Feature)
}

// InUseError is returned by Remove while nodes boot the image.
type InUseError struct {
	Image string
	Nodes []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("image %s is used by node(s) %s", e.Image, strings.Join(e.Nodes, ", "))
}

// InUse lets callers test for the condition behaviourally.
func (e *InUseError) InUse() bool { return true }
