# The tlog wire protocol and storage format of strata.
#
# The first five structs are the pinned wire schema: their names, fields and ordinals are
# fixed so that independent clients and servers interoperate. TlogAggregation is strata's
# own: the plaintext of one stored aggregate (docs/design/tlog-format.md).

@0x932747f7fefba70e;

# Sent by a client right after connecting.
struct HandshakeRequest {
  version @0 :UInt32;          # major<<24 | minor<<16 | patch<<8 | stage
  vdiskID @1 :Text;
  firstSequence @2 :UInt64;
  resetFirstSequence @3 :Bool;
}

# The server's answer to a handshake, sent even when it then closes the connection.
struct HandshakeResponse {
  version @0 :UInt32;
  status @1 :Int8;             # 1 OK, -1 invalid request, -2 invalid version, -3 invalid vdisk id, -4 internal error
}

# One write (operation 1) or discard (operation 2) of a virtual disk.
struct TlogBlock {
  sequence @0 :UInt64;
  offset @1 :UInt64;           # byte offset in the disk
  size @2 :UInt64;             # bytes written or discarded
  hash @3 :Data;               # BLAKE3 of data (32 bytes)
  data @4 :Data;               # empty for a discard
  timestamp @5 :UInt64;        # Unix nanoseconds
  operation @6 :UInt8;
}

# The server's answer to blocks and commands.
struct TlogResponse {
  status @0 :Int8;             # 1 received, 2 flushed, 3 force flush received, 4 slave sync done, -1 receive failed, -2 flush failed
  sequences @1 :List(UInt64);
}

# ForceFlushAtSeq (type 2) and WaitNbdSlaveSync (type 3).
struct Command {
  type @0 :UInt8;
  sequence @1 :UInt64;
}

# One aggregate as stored: the blocks of one flush, chained to the previous aggregate.
struct TlogAggregation {
  name @0 :Text;               # "tlog"
  size @1 :UInt64;             # number of blocks
  timestamp @2 :UInt64;        # Unix nanoseconds of the flush
  vdiskID @3 :Text;
  blocks @4 :List(TlogBlock);  # in sequence order
  prev @5 :Data;               # hash of the previous aggregate; 32 zero bytes for the first
}
