//! An event on its way to subscribers: validated once, serialized once per channel.

use crate::channel::ChannelName;
use crate::socket_id::SocketId;

/// Pusher's cap on channels per publish.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Pusher's cap on an event name.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// A validated event: channels, name, the JSON text of its data, and the socket to skip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    channels: Vec<ChannelName>,
    name: String,
    data: String,
    except: Option<SocketId>,
}

/// Why an event cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// No channels, or more than Pusher's 100.
    #[error("an event needs 1 to {MAX_CHANNELS_PER_EVENT} channels")]
    Channels,
    /// Empty, longer than 200 characters, or containing control characters.
    #[error("event name must be 1 to {MAX_EVENT_NAME_LEN} printable characters")]
    Name,
    /// `data` is bigger than the configured limit.
    #[error("event data is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size of the data received.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl Event {
    /// Validates an event. `data` is the payload's JSON text, sent to clients as a string.
    pub fn new(
        channels: Vec<ChannelName>,
        name: impl Into<String>,
        data: impl Into<String>,
        except: Option<SocketId>,
        max_data_bytes: usize,
    ) -> Result<Self, EventError> {
        let name = name.into();
        let data = data.into();
        if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_EVENT {
            return Err(EventError::Channels);
        }
        if name.is_empty() || name.len() > MAX_EVENT_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(EventError::Name);
        }
        if data.len() > max_data_bytes {
            return Err(EventError::TooLarge {
                size: data.len(),
                limit: max_data_bytes,
            });
        }
        Ok(Self {
            channels,
            name,
            data,
            except,
        })
    }

    /// The channels it goes to.
    pub fn channels(&self) -> &[ChannelName] {
        &self.channels
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JSON text of the payload.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The socket that must not receive it (Laravel's `toOthers()`).
    pub fn except(&self) -> Option<&SocketId> {
        self.except.as_ref()
    }
}
