//! `AsyncRead` and `AsyncWrite` for an enum whose every variant holds a byte stream.

/// Implements `AsyncRead` and `AsyncWrite` for `$stream`, an enum of one-field variants each
/// holding an `AsyncRead + AsyncWrite + Unpin` stream (boxed or not), by passing every call
/// to the stream of the variant at hand: `forward_async_io!(Carrier { Tcp, Tls });`.
///
/// A boxed stream is reached through the `Box` forwarding impls of `futures-io`, which
/// dereference it; the dispatch stays a plain `match`, with no dynamic call.
macro_rules! forward_async_io {
    ($stream:ident { $($variant:ident),+ $(,)? }) => {
        impl ::futures_lite::AsyncRead for $stream {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match self.get_mut() {
                    $($stream::$variant(inner) => ::std::pin::Pin::new(inner).poll_read(cx, buf),)+
                }
            }
        }

        impl ::futures_lite::AsyncWrite for $stream {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match self.get_mut() {
                    $($stream::$variant(inner) => ::std::pin::Pin::new(inner).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match self.get_mut() {
                    $($stream::$variant(inner) => ::std::pin::Pin::new(inner).poll_flush(cx),)+
                }
            }

            fn poll_close(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match self.get_mut() {
                    $($stream::$variant(inner) => ::std::pin::Pin::new(inner).poll_close(cx),)+
                }
            }
        }
    };
}

pub(super) use forward_async_io;
