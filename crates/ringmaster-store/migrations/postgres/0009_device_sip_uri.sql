-- A call a device places itself through its SIP credential reaches us as a `call.initiated`
-- whose `from` is the device's SIP URI; that lookup runs on every such webhook.
CREATE INDEX devices_sip_uri ON devices (sip_uri);
