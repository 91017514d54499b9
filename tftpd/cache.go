package tftpd

import (
	"container/list"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sync/singleflight"
)

// contentCache keeps boot file contents in memory, so a transfer costs no
// read syscall per block and a boot storm reads each kernel from disk once.
// Entries are keyed by the file's identity and version (device, inode, size,
// mtime): a replaced or rewritten file is a new key, never stale content.
type contentCache struct {
	max     int64 // total bytes kept
	maxFile int64 // larger files are served from the file itself

	mu      sync.Mutex
	used    int64
	lru     *list.List // of *cacheEntry, most recent first
	entries map[fileVersion]*list.Element

	loads singleflight.Group
}

type fileVersion struct {
	dev, ino uint64
	size     int64
	mtimeNs  int64
}

func (v fileVersion) String() string {
	return fmt.Sprintf("%d:%d:%d:%d", v.dev, v.ino, v.size, v.mtimeNs)
}

type cacheEntry struct {
	key  fileVersion
	data []byte
}

func newContentCache(max, maxFile int64) *contentCache {
	return &contentCache{max: max, maxFile: maxFile, lru: list.New(), entries: map[fileVersion]*list.Element{}}
}

func versionOf(st fs.FileInfo) (fileVersion, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileVersion{}, false
	}
	return fileVersion{dev: uint64(sys.Dev), ino: uint64(sys.Ino), size: st.Size(), mtimeNs: st.ModTime().UnixNano()}, true
}

// contents returns f's data from the cache, reading it on a miss; ok=false
// when f is not cacheable (too big, cache off) and must be read directly.
// Concurrent misses for one file share a single read.
func (c *contentCache) contents(f *os.File, st fs.FileInfo) (data []byte, ok bool, err error) {
	if c == nil || st.Size() > c.maxFile || st.Size() > c.max {
		return nil, false, nil
	}
	key, ok := versionOf(st)
	if !ok {
		return nil, false, nil
	}
	if data, ok := c.get(key); ok {
		return data, true, nil
	}
	v, err, _ := c.loads.Do(key.String(), func() (any, error) {
		if data, ok := c.get(key); ok {
			return data, nil
		}
		data := make([]byte, key.size)
		if _, err := f.ReadAt(data, 0); err != nil && err != io.EOF {
			return nil, err
		}
		c.put(key, data)
		return data, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.([]byte), true, nil
}

func (c *contentCache) get(key fileVersion) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).data, true
}

func (c *contentCache) put(key fileVersion, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	for c.used+int64(len(data)) > c.max && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*cacheEntry)
		delete(c.entries, old.key)
		c.used -= int64(len(old.data))
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, data: data})
	c.used += int64(len(data))
}

// size reports the bytes held, for metrics.
func (c *contentCache) size() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
