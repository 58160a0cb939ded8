module github.com/kvsgo/kvsgo

go 1.26

require github.com/bluenviron/mediacommon/v2 v2.9.3 // indirect
