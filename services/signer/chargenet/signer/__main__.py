from chargenet.signer.main import main

main()
