package portal

// welcomeData is the page shown once after sign-up.
type welcomeData struct {
	signedUp
	ActionScript, Go string
}

func (p *Portal) welcome(s signedUp) welcomeData {
	return welcomeData{signedUp: s,
		ActionScript: `var nc:NetConnection = new NetConnection();
nc.addEventListener(NetStatusEvent.NET_STATUS, function (e:NetStatusEvent):void {
    trace(e.info.code, nc.nearID); // NetConnection.Connect.Success, your peer ID
});
nc.connect("` + s.URL + `");
// VideoPhone-style applications: WebServiceUrl = "` + s.ExchangeURL + `"`,
		Go: `// import "github.com/stratus-rtmfp/stratus/rtmfp"
nc, err := rtmfp.Connect(ctx, "` + s.URL + `", nil)
if err != nil {
    log.Fatal(err)
}
defer nc.Close()
fmt.Println("my peer ID:", nc.NearID())
nc.RegisterName(ctx, "alice") // friends find it with nc.LookupName(ctx, "alice")`,
	}
}
